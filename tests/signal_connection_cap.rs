//! Issue 14 item 5: connections are capped in total and per source address. With a cap of
//! 20 per source and 30 in all, 25 idle WebSockets from 127.0.0.1 get 20 upgrades and 5
//! answers `503` naming the limit, and 25 more from 127.0.0.2 get the 10 left in the
//! total. Closing connections gives their slots back. Before the fix there was no cap
//! (2,000 idle WebSockets held 283 MB).

mod common;

use std::net::IpAddr;

use common::signal::*;
use common::*;

fn open_many(signal: &SignalProcess, from: IpAddr, n: usize) -> (Vec<RawWs>, Vec<String>) {
    let (mut open, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..n {
        match RawWs::connect(signal.addr, from, None) {
            Upgrade::Open(ws) => open.push(ws),
            Upgrade::Refused(status, body) => refused.push(format!("{status} {body}")),
            Upgrade::Dropped => refused.push("dropped".into()),
        }
    }
    (open, refused)
}

#[test]
fn connections_are_capped_in_total_and_per_source() {
    let serve = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start(
        serve.control,
        &[
            ("BLINDFOLD_SIGNAL_MAX_CONNECTIONS", "30"),
            ("BLINDFOLD_SIGNAL_MAX_CONNECTIONS_PER_SOURCE", "20"),
            ("BLINDFOLD_SIGNAL_METRICS", "true"),
        ],
    );
    let one = IpAddr::from([127, 0, 0, 1]);
    let two = IpAddr::from([127, 0, 0, 2]);
    let (first, refused) = open_many(&signal, one, 25);
    assert_eq!(first.len(), 20, "per-source cap; refused: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r == "503 too many connections from this address"),
        "{refused:?}"
    );
    let (second, refused) = open_many(&signal, two, 25);
    assert_eq!(second.len(), 10, "total cap; refused: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r == "503 the signalling service is at its connection limit"),
        "{refused:?}"
    );
    // Slots come back when connections close.
    drop(first);
    assert!(
        wait_for(|| matches!(RawWs::connect(signal.addr, one, None), Upgrade::Open(_))),
        "a closed connection's slot is given back"
    );
    // Counted (attempts that raced the slots' release above may add to these).
    let counted = |limit: &str| {
        signal
            .metric(&format!(
                "blindfold_signal_connections_refused_total{{limit=\"{limit}\"}}"
            ))
            .unwrap_or(0)
    };
    assert!(counted("per_source") >= 5);
    assert!(counted("total") >= 15);
    drop(second);
}
