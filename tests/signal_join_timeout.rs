//! Issue 14 item 5: a connection that never joins does not hold its slot: it is told
//! `join_timeout` and closed once the join deadline passes. Before the fix an idle
//! WebSocket stayed open for as long as its peer liked.

mod common;

use std::time::Duration;

use common::signal::*;
use common::*;

#[test]
fn a_connection_that_never_joins_is_closed() {
    let serve = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start(
        serve.control,
        &[("BLINDFOLD_SIGNAL_JOIN_TIMEOUT_SECS", "1")],
    );
    let mut idle = RawWs::open(signal.addr);
    let mut joiner = RawWs::open(signal.addr);
    joiner.join(&eid(1), &eid(2), true);
    let m = idle.recv().expect("an answer before the close");
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["code"], "join_timeout", "{m}");
    assert!(
        idle.closed_within(DEADLINE),
        "the idle connection stays open"
    );
    // A joined connection is not subject to the deadline.
    assert!(!joiner.closed_within(Duration::from_millis(1500)));
}
