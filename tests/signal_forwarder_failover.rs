//! Losing a forwarder mid-call (issue 10 item 5): two `blindfold serve` processes and one
//! `blindfold signal` watching both, three participants in this process placed on the first
//! forwarder. The first is killed with SIGKILL; the service declares it lost after
//! `--health-failures` failed checks, moves the call to the second, and each member
//! re-latches there. Every member then receives from every other again, and every such
//! packet opens under the keys it already held (the group never changed); a leave after the
//! move still deletes the leaver's endpoint on the new forwarder, so nothing sent after the
//! leave reaches the leaver. Without the move, no packet reaches anyone after the kill and
//! the test fails.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blindfold::client::{Identity, Participant, ParticipantConfig};
use common::signal::SignalProcess;
use common::{Api, ServeProcess};

/// Stated bound from the kill to every member receiving and opening media from every
/// other through the new forwarder: detection (3 checks 200 ms apart, each bounded by
/// 200 ms) is about 0.8 s, the move a few control calls, the re-latch one round trip; the
/// rest is headroom for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(8);
/// Packets from each other member that must arrive (and open) after the kill.
const AFTER_KILL: usize = 10;
const DEADLINE: Duration = Duration::from_secs(20);

fn ssrc_of(pkt: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(pkt.get(8..12)?.try_into().ok()?))
}

/// Packets `p` received after `since`, by sender SSRC.
fn received_since(p: &Participant, since: Instant) -> HashMap<u32, Vec<Vec<u8>>> {
    let mut by_ssrc: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    for c in p.captured().into_iter().filter(|c| c.at > since) {
        if let Some(s) = ssrc_of(&c.data) {
            by_ssrc.entry(s).or_default().push(c.data);
        }
    }
    by_ssrc
}

#[test]
fn a_killed_forwarders_call_moves_and_goes_on() {
    let mut a = ServeProcess::start(1, &[]);
    let b = ServeProcess::start(1, &[]);
    // A is listed first: with both empty, the call is placed there.
    let signal = SignalProcess::start_on(
        &[a.control, b.control],
        &["--health-interval-ms", "200", "--health-failures", "3"],
        &[("BLINDFOLD_SIGNAL_METRICS", "true")],
    );
    let ws = format!("ws://{}/v1/ws", signal.addr);
    let secret: [u8; 32] = rand::random();
    let ps: Vec<Participant> = (0..3)
        .map(|i| {
            let id = Identity::generate(&format!("p{i}@example.org"), "laptop");
            let mut c = ParticipantConfig::new(&ws, secret, id);
            c.record = 100_000;
            let p = Participant::spawn(c).expect("participant starts");
            p.wait_ready(DEADLINE).expect("participant ready");
            p
        })
        .collect();
    let conf = ps[0].conference().to_hex();
    let (api_a, api_b) = (Api::new(a.control), Api::new(b.control));
    assert!(api_a.get(&conf).all_latched(3), "the call is on A");
    assert!(api_b.list().conferences.is_empty(), "and not on B");
    for p in &ps {
        assert!(
            p.wait_stats(DEADLINE, |s| s.decrypted > 50),
            "{:?}",
            p.stats()
        );
    }

    a.child.kill().expect("SIGKILL A");
    let killed = Instant::now();
    a.child.wait().expect("A reaped");

    // Every member hears every other again, and opens each packet that came after the kill.
    let ssrcs: Vec<Vec<u32>> = ps.iter().map(Participant::ssrcs).collect();
    let back = loop {
        let all = ps.iter().enumerate().all(|(i, p)| {
            let got = received_since(p, killed);
            (0..ps.len())
                .filter(|&j| j != i)
                .flat_map(|j| &ssrcs[j])
                .all(|s| got.get(s).is_some_and(|v| v.len() >= AFTER_KILL))
        });
        if all {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < DEADLINE,
            "media did not come back: {:?}",
            ps.iter().map(Participant::stats).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("media back at every member {back:?} after the kill (bound {BOUND:?})");
    assert!(back < BOUND, "back after {back:?}, bound {BOUND:?}");
    for (i, p) in ps.iter().enumerate() {
        for (s, pkts) in received_since(p, killed) {
            assert!(
                ssrcs
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && o.contains(&s)),
                "only members' SSRCs arrive"
            );
            let r = p.probe(pkts, DEADLINE).expect("probe");
            assert_eq!(r.opened, r.tried, "member {i} opens all it got from {s:#x}");
        }
        let st = p.stats();
        assert_eq!(st.moves, 1, "{st:?}");
        assert_eq!(st.failed, 0, "{st:?}");
    }
    assert_eq!(signal.metric("blindfold_signal_moves_total"), Some(1));
    assert_eq!(
        signal.metric("blindfold_signal_moved_members_total"),
        Some(3)
    );
    assert!(api_b.get(&conf).all_latched(3), "every member latched on B");

    // A leave after the move: the leaver's endpoint goes from B, nothing sent after it
    // reaches the leaver, and the two others keep receiving each other.
    let leaver = ps[2].id().to_hex();
    let left_at = ps[2].leave(DEADLINE).expect("leave completes");
    let state = api_b.get(&conf);
    assert!(state.endpoint(&leaver).is_none(), "leaver's endpoint gone");
    assert_eq!(state.endpoints.len(), 2);
    let before: Vec<u64> = ps[..2].iter().map(|p| p.stats().decrypted).collect();
    for (p, n) in ps[..2].iter().zip(before) {
        assert!(
            p.wait_stats(DEADLINE, |s| s.decrypted >= n + 50),
            "{:?}",
            p.stats()
        );
    }
    // Datagrams B sent before the deletion may still be read after `left`; none sent after
    // the leave completed may arrive.
    for (ssrc, seq, _) in ps[2].received_after_leave() {
        let sent = ps[..2].iter().find_map(|p| p.send_time(ssrc, seq));
        assert!(
            sent.is_some_and(|t| t <= left_at),
            "the leaver got a packet sent after its leave"
        );
    }

    for p in ps {
        let (_, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
    }
}
