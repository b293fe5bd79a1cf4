//! Issue 14 item 5: one source cannot fill the forwarders with conferences. 200 joins to
//! random conference ids from 127.0.0.2 get at most the per-source quota of conferences
//! (5 here) and `source_limit` for the rest, and an honest participant from 127.0.0.1
//! still gets in. Before the fix the flood filled the forwarder's conference limit and
//! the honest join was refused (with a misleading `forwarder answered 404`).

mod common;

use std::net::IpAddr;

use common::signal::*;
use common::*;

#[test]
fn a_join_flood_from_one_source_cannot_fill_the_forwarder() {
    let serve = ServeProcess::start(1, &["--max-conferences", "50"]);
    let signal = SignalProcess::start(
        serve.control,
        &[
            ("BLINDFOLD_SIGNAL_MAX_CONFERENCES_PER_SOURCE", "5"),
            ("BLINDFOLD_SIGNAL_METRICS", "true"),
        ],
    );
    let attacker = IpAddr::from([127, 0, 0, 2]);
    let mut held = Vec::new();
    let (mut joined, mut limited, mut other) = (0, 0, Vec::new());
    for n in 0..200u64 {
        let Upgrade::Open(mut ws) = RawWs::connect(signal.addr, attacker, None) else {
            other.push("no websocket".to_string());
            continue;
        };
        // A valid proof: the flood comes from someone who holds call secrets.
        let text = ws.join_text(&eid(1000 + n), &eid(5000 + n), true);
        ws.send_text(&text).unwrap();
        let m = ws.recv().expect("an answer to join");
        match (m["type"].as_str(), m["code"].as_str()) {
            (Some("joined"), _) => joined += 1,
            (Some("error"), Some("source_limit")) => limited += 1,
            _ => other.push(m.to_string()),
        }
        held.push(ws);
    }
    other.truncate(3);
    eprintln!("join flood: {joined} joined, {limited} source_limit, first others: {other:?}");
    assert_eq!(joined, 5, "conferences one source may create");
    assert_eq!(limited, 195, "first other answers: {other:?}");
    let mut honest = RawWs::open(signal.addr);
    honest.join(&eid(1), &eid(2), true);
    assert_eq!(
        signal.metric("blindfold_signal_refused_total{code=\"source_limit\"}"),
        Some(195),
        "counted in /metrics"
    );
    drop(held);
}
