//! Control-API abuse does not disturb forwarding: slow-loris connections, clients that
//! vanish mid-request, and a burst of 10,000 requests, all while a call forwards. The
//! test measures the call's forwarding latency (send → receive on loopback) before and
//! during the abuse, prints both p99s, and requires no loss and a bounded p99.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Sends `n` packets from a to b at ~1 kHz and returns (lost, p99 µs).
fn measure(call: &Call, base_seq: u16, n: u16) -> (usize, u64) {
    let (a, b) = (call.peer("a"), call.peer("b"));
    b.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut lost = 0;
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let seq = base_seq.wrapping_add(i);
        let p = rtp(0xA1, seq, 100);
        let t0 = Instant::now();
        a.send(&p);
        loop {
            match b.sock.recv_from(&mut buf) {
                Ok((len, _)) if buf[..len] == p[..] => {
                    h.record(t0.elapsed().as_micros() as u64).unwrap();
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    (lost, h.value_at_quantile(0.99))
}

#[test]
fn control_api_abuse_does_not_disturb_forwarding() {
    let serve = ServeProcess::start(1, &[]);
    let call = Call::on(serve.media, serve.control);
    let (lost0, p99_before) = measure(&call, 0, 500);
    assert_eq!(lost0, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let control = serve.control;
    let mut abusers = Vec::new();
    // 50 slow-loris connections trickling header bytes.
    {
        let stop = stop.clone();
        abusers.push(std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..50)
                .filter_map(|_| TcpStream::connect(control).ok())
                .collect();
            for c in &mut conns {
                let _ = c.write_all(b"GET /v1/conferences HTTP/1.1\r\nHost: x\r\n");
            }
            while !stop.load(Ordering::Relaxed) {
                for c in &mut conns {
                    let _ = c.write_all(b"X-Slow: 1\r\n");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    // Clients that send half a request body and vanish.
    {
        let stop = stop.clone();
        abusers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut c) = TcpStream::connect(control) {
                    let _ = c.write_all(
                        b"POST /v1/conferences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":",
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // A burst of 10,000 authenticated requests from 4 clients.
    let burst_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..4 {
        let done = burst_done.clone();
        abusers.push(std::thread::spawn(move || {
            let api = Api::new(control);
            for _ in 0..2_500 {
                api.list();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let (lost1, p99_during) = measure(&call, 10_000, 500);
    let finished = wait_for(|| burst_done.load(Ordering::Relaxed) == 10_000);
    stop.store(true, Ordering::Relaxed);
    for t in abusers {
        t.join().unwrap();
    }
    eprintln!("forwarding p99 before abuse {p99_before} µs, during {p99_during} µs");
    assert!(finished, "the 10,000-request burst completed");
    assert_eq!(lost1, 0, "packets lost during control-API abuse");
    // On a loaded 2-core CI machine the generous bound only catches a forwarder that
    // stalls behind its control plane (tens of milliseconds); the printed figures are
    // what the README records.
    assert!(p99_during < 20_000, "p99 during abuse {p99_during} µs");
    // The API still answers promptly afterwards.
    assert_eq!(call.api.client().healthz().ok(), Some(true));
}
