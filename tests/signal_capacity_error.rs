//! Issue 14 item 5: when the forwarder has no room for another conference, a join is
//! refused with `capacity` (retry later), not reported as a forwarder fault. Before the
//! fix the service took the forwarder's 409 `too_many_conferences` for "exists", went on
//! to create an endpoint in a conference that did not exist, and answered `forwarder`:
//! "forwarder answered 404".

mod common;

use common::signal::*;
use common::*;

#[test]
fn a_full_forwarder_is_reported_as_capacity() {
    let serve = ServeProcess::start(1, &["--max-conferences", "2"]);
    let signal = SignalProcess::start(serve.control, &[]);
    let mut members = Vec::new();
    for n in 0..2 {
        let mut ws = RawWs::open(signal.addr);
        ws.join(&eid(100 + n), &eid(200 + n), true);
        members.push(ws);
    }
    let mut third = RawWs::open(signal.addr);
    let text = third.join_text(&eid(102), &eid(202), true);
    third.send_text(&text).unwrap();
    let m = third.recv().expect("an answer to join");
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["code"], "capacity", "{m}");
    // Room comes back when a conference ends.
    drop(members.pop());
    assert!(
        wait_for(|| {
            let mut ws = RawWs::open(signal.addr);
            let text = ws.join_text(&eid(102), &eid(202), true);
            ws.send_text(&text).is_ok() && ws.recv().is_some_and(|m| m["type"] == "joined")
        }),
        "a join succeeds once a conference has ended"
    );
}
