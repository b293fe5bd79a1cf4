//! `blindfold load --spawn`: a short, low-rate run against an in-process forwarder loses
//! nothing, misroutes nothing, and writes its latency report (JSON and .hgrm).

use std::process::Command;

#[test]
fn low_rate_spawned_run_is_lossless_and_writes_latency_files() {
    run(false);
}

/// The same with real SRTP from the E2EE code (`--encrypt`): the forwarder forwards it
/// the same way, and the generator keeps up.
#[test]
fn encrypted_spawned_run_is_lossless() {
    run(true);
}

fn run(encrypt: bool) {
    let dir = std::env::temp_dir().join(format!(
        "blindfold-load-spawn-{}-{encrypt}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, hgrm) = (dir.join("run.json"), dir.join("run.hgrm"));
    let out = Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args([
            "load",
            "--spawn",
            "--shards",
            "2",
            "--conferences",
            "2",
            "--size",
            "3",
        ])
        .args([
            "--profile",
            "audio",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            // A loaded CI machine can hold copies in socket queues for hundreds of ms:
            // wait for them before counting one as lost.
            "--drain-ms",
            "2000",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .args(encrypt.then_some("--encrypt"))
        .output()
        .expect("blindfold runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // 2 conferences × 3 audio publishers × 50 packets/s × 2 subscribers over 1.5 s.
    let expected = report["expected_copies"].as_u64().unwrap();
    assert!(expected > 500, "too few copies expected: {report}");
    assert_eq!(
        report["received_copies"].as_u64(),
        Some(expected),
        "{stdout}"
    );
    assert_eq!(report["lost_copies"].as_u64(), Some(0), "{stdout}");
    assert_eq!(report["duplicates"].as_u64(), Some(0));
    assert_eq!(report["misrouted"].as_u64(), Some(0));
    assert_eq!(report["latency_us"]["count"].as_u64(), Some(expected));
    assert!(report["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!(report["target_cpu"]["us_per_copy"].as_f64().is_some());
    let h = std::fs::read_to_string(&hgrm).unwrap();
    assert!(h.contains("Percentile") && h.contains("#[Max"), "{h}");
    assert!(stdout.contains("latency µs: p50"));
    std::fs::remove_dir_all(&dir).ok();
}
