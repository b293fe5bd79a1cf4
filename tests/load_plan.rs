//! `blindfold plan`: a tiny two-step sweep against a spawned forwarder writes the whole
//! report folder (JSON, Markdown with the capacity statement, SVG plots, .hgrm per step).

use std::process::Command;

#[test]
fn two_step_sweep_writes_the_report_folder() {
    let dir = std::env::temp_dir().join(format!("blindfold-plan-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args([
            "plan",
            "--spawn",
            "--sweep",
            "conferences",
            "--conferences",
            "1",
            "--size",
            "3",
        ])
        .args([
            "--profile",
            "audio",
            "--factor",
            "2",
            "--max-steps",
            "2",
            "--refine",
            "0",
        ])
        .args([
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--slo-p99-us",
            "0",
            "--slo-loss-pct",
            "100",
            "--quiet",
            "--out",
        ])
        .arg(&dir)
        .output()
        .expect("blindfold runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plan failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "plan.json",
        "summary.md",
        "latency.svg",
        "loss.svg",
        "hdr.svg",
        "step-00.hgrm",
        "step-01.hgrm",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["value"].as_u64(), Some(2), "conferences doubled");
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("one shard carries"), "{md}");
    assert!(md.contains("in conferences of 3"), "{md}");
    assert!(
        std::fs::read_to_string(dir.join("latency.svg"))
            .unwrap()
            .starts_with("<svg")
    );
    assert!(stdout.contains("CAPACITY target=forwarder"));
    std::fs::remove_dir_all(&dir).ok();
}
