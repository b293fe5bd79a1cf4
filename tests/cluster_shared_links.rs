//! Many calls share one pair of forwarders' relay link (a private redis-server, three
//! `serve --redis` processes): three calls, each spread over all three forwarders, have
//! their relay endpoints at the same peer addresses, and the forwarders tell them apart
//! by SSRC. Nothing is lost, nothing is duplicated or delivered to another call, and
//! each published packet crosses each link its plan says exactly once.
//! (Before relay demultiplexing `blindfold load` refused this layout: the second call's
//! relay took the first one's address.)

mod common;
use common::redis::{ClusterClient, RedisServer, within};
use common::*;

use serde_json::Value;

#[test]
fn three_spread_calls_share_each_link_losslessly() {
    let redis = RedisServer::start();
    let url = redis.url();
    let c = ClusterClient::new(&url);
    let _fwds: Vec<ServeProcess> = (0..3)
        .map(|i| ServeProcess::start(1, &["--redis", &url, "--node-id", &format!("fwd-{i}")]))
        .collect();
    assert!(within(DEADLINE, || c.nodes().len() == 3).is_some());

    let json = std::env::temp_dir().join(format!("bf-shared-links-{}.json", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args(["load", "--redis", &url, "--token", TOKEN, "--quiet"])
        .args(["--profile", "audio", "--warmup", "0.5", "--duration", "2"])
        .args(["--drain-ms", "2000"])
        .args(["--layout", "spread", "--conferences", "3", "--size", "6"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("blindfold load runs");
    assert!(
        out.status.success(),
        "load failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);

    assert_eq!(r["lost_copies"], 0, "{r:#}");
    assert_eq!(r["duplicates"], 0, "{r:#}");
    let cl = &r["cluster"];
    assert_eq!(cl["max_span"], 3, "{cl:#}");
    assert_eq!(cl["planned_link_copies_per_packet"], 2.0, "{cl:#}");
    let in_pps = r["in_pps"].as_f64().unwrap();
    let link_pps = cl["link_pps"].as_f64().unwrap();
    assert!(
        (link_pps - 2.0 * in_pps).abs() <= 0.1 * 2.0 * in_pps,
        "2 link copies per packet in, over links every call shares \
         ({link_pps:.0}/s for {in_pps:.0}/s): {cl:#}"
    );
    for n in cl["nodes"].as_array().unwrap() {
        assert_eq!(n["participants"], 6, "{cl:#}");
        assert_eq!(
            n["endpoints"], 12,
            "per call two members and two relays: {cl:#}"
        );
    }
}
