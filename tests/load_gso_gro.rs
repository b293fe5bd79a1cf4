//! `blindfold load --gso --gro`: the generator sends each video burst as one segmented
//! send and its receivers take coalesced copies; against a spawned forwarder with its
//! offloads on, the run is lossless, the bursts were segmented, and the copies arrived
//! coalesced, which only happens because the forwarder segmented them too (the same run
//! with the forwarder's offloads off delivers the same copies, none coalesced).

use std::process::Command;

use serde_json::Value;

fn run(offload: bool) -> Value {
    let json = std::env::temp_dir().join(format!(
        "blindfold-load-gso-{}-{offload}.json",
        std::process::id()
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args(["load", "--spawn", "--offload", &offload.to_string()])
        .args(["--conferences", "2", "--size", "3"])
        .args(["--profile", "burst:50:8:1000", "--gso", "--gro"])
        .args(["--duration", "1", "--warmup", "0.3", "--quiet"])
        // Wait out queues on a loaded machine before counting a copy as lost.
        .args(["--drain-ms", "2000"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("blindfold runs");
    assert!(
        out.status.success(),
        "load failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    report
}

#[test]
fn segmented_bursts_reach_coalescing_receivers_without_loss() {
    if !blindfold::udp::gso_supported("127.0.0.1:0".parse().unwrap()) {
        eprintln!("note: kernel without UDP_SEGMENT; skipping");
        return;
    }
    for offload in [true, false] {
        let r = run(offload);
        // 2 conferences × 3 publishers × 400 packets/s × 2 subscribers over 1 s.
        assert!(r["expected_copies"].as_u64().unwrap() > 3000, "{r}");
        assert_eq!(r["lost_copies"], 0, "{r}");
        assert_eq!(r["misrouted"], 0, "{r}");
        let o = &r["offload"];
        assert_eq!(o["gso"], true);
        assert!(
            o["gso_sends"].as_u64().unwrap() > 0,
            "bursts segmented: {o}"
        );
        assert_eq!(o["gso_fallbacks"], 0);
        let coalesced = o["gro_buffers"].as_u64().unwrap();
        if offload {
            assert!(coalesced > 0, "copies arrive coalesced: {o}");
        } else {
            assert_eq!(
                coalesced, 0,
                "a plain forwarder sends copies one by one: {o}"
            );
        }
    }
}
