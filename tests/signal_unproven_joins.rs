//! Issue 14 item 5: joins without a key proof are capped per source (2 here): the third
//! from one address is refused `source_limit`, a join with a proof still gets in, and a
//! leave gives the slot back. Before the fix a stranger could add any number of members
//! without even pretending to know the call.

mod common;

use common::signal::*;
use common::*;

#[test]
fn joins_without_a_key_proof_are_capped_per_source() {
    let serve = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start(
        serve.control,
        &[("BLINDFOLD_SIGNAL_MAX_UNPROVEN_PER_SOURCE", "2")],
    );
    let conf = eid(1);
    let mut a = RawWs::open(signal.addr);
    a.join(&conf, &eid(10), false);
    let mut b = RawWs::open(signal.addr);
    b.join(&conf, &eid(11), false);
    let mut c = RawWs::open(signal.addr);
    c.send_text(&join(&conf, &eid(12), false)).unwrap();
    let m = c.recv().expect("an answer to join");
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["code"], "source_limit", "{m}");
    let mut proven = RawWs::open(signal.addr);
    proven.join(&conf, &eid(13), true);
    // A leave gives the slot back.
    a.send_text(r#"{"v":1,"type":"leave"}"#).unwrap();
    assert!(a.recv_type("left").is_some());
    c.send_text(&join(&conf, &eid(12), false)).unwrap();
    assert!(c.recv_type("joined").is_some(), "the slot came back");
}
