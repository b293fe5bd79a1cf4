//! The order a leave keeps although forwarder calls are no longer made under a lock: the
//! leaver's endpoint is deleted on the forwarder before any other member hears that it
//! left (so it receives nothing after the others start their rekey). Against a forwarder
//! that takes 300 ms to delete an endpoint, `member_left` reaches the others only after
//! that deletion was answered, and `left` reaches the leaver then too.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::signal::*;
use common::slow_forwarder::{self, DELAY, Seen};

#[test]
fn the_others_hear_of_a_leave_only_after_the_forwarder_deleted_the_endpoint() {
    let seen = Arc::new(Seen::default());
    let signal = SignalProcess::start(slow_forwarder::start(seen.clone()), &[]);
    let conf = eid(1);
    let leaver_id = eid(10);
    let mut leaver = RawWs::open(signal.addr);
    leaver.join(&conf, &leaver_id, true);
    let mut others: Vec<RawWs> = (0..3)
        .map(|n| {
            let mut ws = RawWs::open(signal.addr);
            ws.join(&conf, &eid(20 + n), true);
            ws
        })
        .collect();

    let asked = Instant::now();
    leaver.send_text(r#"{"v":1,"type":"leave"}"#).unwrap();
    for ws in &mut others {
        let m = ws.recv_type("member_left").expect("member_left");
        assert_eq!(m["participant"], leaver_id.as_str());
        let heard = Instant::now();
        let deleted = seen.deleted.lock().unwrap().clone();
        let at = deleted
            .iter()
            .find(|(ep, _)| *ep == leaver_id)
            .map(|(_, at)| *at)
            .expect("the leaver's endpoint was deleted before the others heard of it");
        assert!(at <= heard);
        assert!(heard - asked >= DELAY, "told after {:?}", heard - asked);
    }
    leaver.recv_type("left").expect("left");
    assert!(asked.elapsed() >= DELAY);
}
