//! Issue 14 item 3 against the real process: wrong-password checks from 1,000 source
//! ports of one host, as fast as this machine sends them, aimed at the attacker's own
//! ufrag, for three times the consent timeout. The honest participants' consent checks
//! (from their selected addresses) keep being answered, their consent never lapses and
//! media keeps flowing; the flood is refused before any HMAC beyond its budgets, counted
//! `stun_rate_limited`, and gets no answer.

mod common;
use blindfold::proto::stun as ice;
use common::*;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONSENT_S: u64 = 2;

#[test]
fn a_flood_from_a_thousand_ports_does_not_starve_honest_consent() {
    let serve = ServeProcess::start(2, &["--consent-timeout", &CONSENT_S.to_string()]);
    let call = Call::on(serve.media, serve.control);
    call.api.conference("f1");
    let x = call.api.endpoint("f1", "x");
    for p in &call.peers {
        p.sock.set_nonblocking(true).unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let answered_flood = Arc::new(AtomicU64::new(0));
    let flood = {
        let (stop, sent, answered_flood) = (stop.clone(), sent.clone(), answered_flood.clone());
        let media = serve.media;
        std::thread::spawn(move || {
            let socks: Vec<UdpSocket> = (0..1000)
                .map(|_| {
                    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                    s.set_nonblocking(true).unwrap();
                    s
                })
                .collect();
            let req = ice::binding_request([7; 12], &x.ufrag, "x", b"wrong-password-wrong-pwd");
            let mut buf = [0u8; 256];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for s in &socks {
                    let _ = s.send_to(&req, media);
                }
                n += socks.len() as u64;
                if n.is_multiple_of(20_000) {
                    for s in &socks {
                        while s.recv_from(&mut buf).is_ok() {
                            answered_flood.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            sent.store(n, Ordering::Relaxed);
        })
    };

    // Three consent timeouts: each participant checks every 250 ms; a publishes every
    // 20 ms and b must keep receiving.
    let start = Instant::now();
    let run = Duration::from_secs(3 * CONSENT_S);
    let mut pending: Vec<Option<[u8; 12]>> = vec![None; call.peers.len()];
    let (mut checks, mut answers) = (0usize, 0usize);
    // Answers per participant per consent window.
    let windows = 3;
    let mut answered_in = vec![vec![0usize; windows + 1]; call.peers.len()];
    let mut b_by_second = vec![0usize; run.as_secs() as usize + 1];
    let mut seq = 0u16;
    let mut next_check = start;
    while start.elapsed() < run {
        if Instant::now() >= next_check {
            for (i, p) in call.peers.iter().enumerate() {
                let txid: [u8; 12] = rand::random();
                let c = &call.creds[i];
                p.send(&ice::binding_request(
                    txid,
                    &c.ufrag,
                    "client",
                    c.pwd.as_bytes(),
                ));
                pending[i] = Some(txid);
                checks += 1;
            }
            next_check += Duration::from_millis(250);
        }
        call.peer("a").send(&rtp(0xA1, seq, 100));
        seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
        for (i, p) in call.peers.iter().enumerate() {
            for pkt in p.drain() {
                if let Some(t) = pending[i]
                    && ice::parse_binding_success(&pkt, &t, call.creds[i].pwd.as_bytes()).is_ok()
                {
                    answers += 1;
                    pending[i] = None;
                    answered_in[i][start.elapsed().as_secs() as usize / CONSENT_S as usize] += 1;
                } else if i == 1 && rtp_id(&pkt).is_some() {
                    b_by_second[start.elapsed().as_secs() as usize] += 1;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let rate = sent.load(Ordering::Relaxed) as f64 / run.as_secs_f64();
    let limited = call.api.counter(
        "blindfold_dropped_packets_total",
        "reason=\"stun_rate_limited\"",
    );
    println!(
        "flood: {rate:.0} checks/s from 1000 ports for {} s; {limited} refused before the \
         HMAC; honest checks answered {answers}/{checks}; b's media per second {b_by_second:?}",
        run.as_secs()
    );
    // Consent needs one answered check per timeout: every participant got several in
    // every window. (Some checks may be lost when the flood fills the socket buffers; the
    // kernel drops those before the forwarder sees them.)
    for (i, per_window) in answered_in.iter().enumerate() {
        assert!(
            per_window[..windows].iter().all(|&n| n >= 2),
            "{}: answered checks per {CONSENT_S} s window {per_window:?}",
            NAMES[i]
        );
    }
    assert!(
        answers * 2 >= checks,
        "honest checks answered: {answers} of {checks}"
    );
    assert!(
        limited > 10_000,
        "the flood ({rate:.0}/s) never exceeded the budgets: {limited} refused"
    );
    assert_eq!(
        answered_flood.load(Ordering::Relaxed),
        0,
        "the flood got answers"
    );
    for (s, &n) in b_by_second.iter().enumerate().take(run.as_secs() as usize) {
        assert!(n > 0, "b received nothing in second {s}: {b_by_second:?}");
    }
    assert!(call.api.get("c1").endpoints.iter().all(|e| e.latched));
}
