//! Join/leave churn against the real process: endpoint create → STUN latch → delete,
//! many thousand times. Memory returns to where it was and no routing entry is left
//! behind (control model, shard tables, gauges).
//!
//! CI runs 2,000 cycles; `BLINDFOLD_CHURN_CYCLES=100000 cargo test --release --test
//! ops_churn` runs the full 100,000 (figures in the README).

mod common;
use blindfold::control::TrackKind;
use common::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc")
}

#[test]
fn churn_leaves_memory_and_tables_where_they_started() {
    let cycles: usize = std::env::var("BLINDFOLD_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let serve = ServeProcess::start(2, &[]);
    let api = Api::new(serve.control);
    api.conference("churn");
    // A steady member, so the conference's routes are rebuilt on every join and leave.
    api.endpoint("churn", "steady");
    api.tracks(
        "churn",
        "steady",
        vec![track("mic", TrackKind::Audio, &[1])],
    );
    let peers: Vec<Peer> = (0..64).map(|_| Peer::new(serve.media)).collect();
    let cycle = |i: usize| {
        let id = format!("e{i}");
        let creds = api.endpoint("churn", &id);
        api.tracks(
            "churn",
            &id,
            vec![track("cam", TrackKind::Video, &[1000 + i as u32])],
        );
        api.subscribe("churn", &id, &[("steady", "mic")]);
        peers[i % peers.len()].latch(&creds);
        api.delete_endpoint("churn", &id);
    };
    let warmup = (cycles / 10).max(500);
    for i in 0..warmup {
        cycle(i);
    }
    let before = rss_kib(serve.child.id());
    let started = std::time::Instant::now();
    for i in warmup..warmup + cycles {
        cycle(i);
    }
    let elapsed = started.elapsed();
    let after = rss_kib(serve.child.id());
    eprintln!(
        "churn: {cycles} cycles in {:.1} s ({:.0}/s); RSS {before} KiB -> {after} KiB",
        elapsed.as_secs_f64(),
        cycles as f64 / elapsed.as_secs_f64()
    );
    assert!(
        after <= before + before / 20 + 512,
        "RSS grew from {before} KiB to {after} KiB over {cycles} cycles"
    );
    // Nothing stale: the model holds only the steady member, and every shard's table
    // drops back to it (gauges are published at least every 500 ms).
    assert_eq!(api.get("churn").endpoints.len(), 1);
    assert!(wait_for(|| api.counter("blindfold_endpoints", "") == 1));
    assert!(wait_for(|| api
        .counter("blindfold_shard_latched_endpoints", "")
        == 0));
    // Two shards, each holding only the steady member.
    assert!(wait_for(
        || api.counter("blindfold_shard_endpoints", "") == 2
    ));
}
