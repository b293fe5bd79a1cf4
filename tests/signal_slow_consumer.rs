//! Issue 14 item 4: a member that never reads, while another relays 4 KiB MLS proposals to
//! it as fast as the service takes them, is disconnected as a slow consumer (the others
//! are told it left), and the service's memory stays bounded: before the fix its outgoing
//! queue was unbounded and the process grew by every message relayed.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::signal::*;
use common::*;

/// Messages the talker sends at most: 20,000 × 8 KiB of hex is 160 MiB if all were kept.
const MESSAGES: usize = 20_000;

#[test]
fn a_member_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let serve = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start(serve.control, &[("BLINDFOLD_SIGNAL_METRICS", "true")]);
    let conf = eid(1);
    let (silent_id, talker_id) = (eid(10), eid(11));
    // The silent member: a small receive buffer; it joins, then never reads again.
    let Upgrade::Open(mut silent) =
        RawWs::connect(signal.addr, IpAddr::from([127, 0, 0, 1]), Some(4096))
    else {
        panic!("no WebSocket for the silent member");
    };
    silent.join(&conf, &silent_id, true);
    let mut talker = RawWs::open(signal.addr);
    talker.join(&conf, &talker_id, true);
    let mut out = talker.writer();

    let left = Arc::new(AtomicBool::new(false));
    let reader = {
        let left = left.clone();
        let silent_id = silent_id.clone();
        std::thread::spawn(move || {
            while let Some(m) = talker.recv() {
                if m["type"] == "member_left" && m["participant"] == silent_id.as_str() {
                    left.store(true, Ordering::Release);
                    return;
                }
            }
        })
    };

    let baseline = signal.rss_kib();
    // 4 KiB MLS proposals, which the service relays to every other member.
    let key = proposal(&conf, 4096);
    let mut sent = 0;
    while sent < MESSAGES && !left.load(Ordering::Acquire) {
        if write_text(&mut out, &key).is_err() {
            break;
        }
        sent += 1;
    }
    let dropped = wait_for(|| left.load(Ordering::Acquire));
    let peak = signal.peak_rss_kib();
    eprintln!(
        "slow consumer: {sent} handshake messages sent; RSS {baseline} KiB before, peak {peak} KiB; \
         silent member dropped: {dropped}"
    );
    assert!(dropped, "the silent member was never disconnected");
    assert!(
        peak < baseline + 24 * 1024,
        "the service grew from {baseline} KiB to a peak of {peak} KiB"
    );
    assert!(
        silent.closed_within(DEADLINE),
        "the slow consumer's connection stays open"
    );
    assert_eq!(
        signal.metric("blindfold_signal_slow_consumers_total"),
        Some(1),
        "counted in /metrics"
    );
    drop(out);
    drop(signal);
    let _ = reader.join();
}
