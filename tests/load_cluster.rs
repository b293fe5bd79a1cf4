//! `blindfold load --redis` drives a real cluster (a private redis-server, three
//! `serve --redis` processes): a call spread over the three forwarders through relay links
//! loses nothing, each published packet crosses exactly the links its plan says, and the
//! cluster's own placement with a small budget spreads one call over two forwarders.

mod common;
use common::redis::{ClusterClient, RedisServer, within};
use common::*;

use serde_json::Value;

fn load(url: &str, extra: &[&str]) -> Value {
    let json = std::env::temp_dir().join(format!(
        "bf-load-cluster-{}-{}.json",
        std::process::id(),
        extra.join("_").replace([':', '/'], "-")
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args(["load", "--redis", url, "--token", TOKEN, "--quiet"])
        .args(["--profile", "audio", "--warmup", "0.5", "--duration", "2"])
        // Wait out queues on a loaded machine before counting a copy as lost.
        .args(["--drain-ms", "2000"])
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .expect("blindfold load runs");
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
fn load_across_three_forwarders_is_lossless_and_crosses_links_as_planned() {
    let redis = RedisServer::start();
    let url = redis.url();
    let c = ClusterClient::new(&url);
    let _fwds: Vec<ServeProcess> = (0..3)
        .map(|i| ServeProcess::start(1, &["--redis", &url, "--node-id", &format!("fwd-{i}")]))
        .collect();
    assert!(within(DEADLINE, || c.nodes().len() == 3).is_some());

    // Member m on forwarder m mod 3: every packet goes to the two other forwarders.
    let r = load(
        &url,
        &["--layout", "spread", "--conferences", "1", "--size", "6"],
    );
    assert_eq!(r["lost_copies"], 0, "{r:#}");
    assert_eq!(
        r["duplicates"], 0,
        "each link carries each packet once: {r:#}"
    );
    let cl = &r["cluster"];
    assert_eq!(cl["max_span"], 3);
    assert_eq!(cl["planned_link_copies_per_packet"], 2.0);
    let in_pps = r["in_pps"].as_f64().unwrap();
    let link_pps = cl["link_pps"].as_f64().unwrap();
    assert!(
        (link_pps - 2.0 * in_pps).abs() <= 0.1 * 2.0 * in_pps,
        "the forwarders sent 2 link copies per packet in ({link_pps:.0}/s for {in_pps:.0}/s): {cl:#}"
    );
    for n in cl["nodes"].as_array().unwrap() {
        assert_eq!(n["participants"], 2, "{cl:#}");
        assert_eq!(n["endpoints"], 4, "two members and two relays: {cl:#}");
    }

    // The cluster's placement, budget 4 endpoints: the call fills its home, then spills.
    // Placement reads the forwarders' reported load: wait until the last run is gone
    // from it.
    assert!(
        within(DEADLINE, || c.nodes().iter().all(|n| n.load.endpoints == 0)).is_some(),
        "the forwarders report the last run's endpoints gone"
    );
    let r = load(
        &url,
        &["--layout", "placed:4", "--conferences", "1", "--size", "6"],
    );
    assert_eq!(r["lost_copies"], 0, "{r:#}");
    let cl = &r["cluster"];
    assert_eq!(cl["max_span"], 2, "{cl:#}");
    let mut placed: Vec<u64> = cl["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["participants"].as_u64().unwrap())
        .collect();
    placed.sort_unstable();
    assert_eq!(placed, [0, 2, 4], "{cl:#}");
    // The run's placement is gone from Redis with the run.
    let left: Vec<String> = c
        .block_on(c.cluster.keys())
        .unwrap()
        .into_iter()
        .filter(|k| k.starts_with("bf:call:"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
