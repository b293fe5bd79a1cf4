//! Control calls are made without holding the conference, and independent ones run
//! concurrently. Against a forwarder whose subscription updates each take 300 ms, a
//! publish in an 8-member call sends its 7 updates at once rather than one after another,
//! and a key message in the same call is relayed while they are pending. Before, every
//! call ran on the blocking pool under the conference's lock: the 7 updates took 2.1 s in
//! a row and the key message waited for all of them.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use common::signal::*;
use common::slow_forwarder::{self, DELAY, Seen};
use common::*;

const MEMBERS: u64 = 8;

#[test]
fn a_publish_updates_subscriptions_concurrently_and_relays_go_on_meanwhile() {
    let seen = Arc::new(Seen::default());
    let control = slow_forwarder::start(seen.clone());
    let signal = SignalProcess::start(control, &[]);
    let conf = eid(1);
    let mut members: Vec<RawWs> = (0..MEMBERS)
        .map(|n| {
            let mut ws = RawWs::open(signal.addr);
            ws.join(&conf, &eid(100 + n), true);
            ws
        })
        .collect();
    // Nobody publishes yet, so no member needs a subscription update.
    assert_eq!(seen.subscription_puts.load(Ordering::SeqCst), 0);

    let started = Instant::now();
    members[0]
        .send_text(r#"{"v":1,"type":"publish","tracks":[{"id":"mic","kind":"audio","ssrcs":[7]}]}"#)
        .unwrap();
    // Member 1 hears of the tracks (they are on the forwarder); the 7 subscription updates
    // are now pending. An MLS proposal from it reaches member 2 meanwhile.
    members[1].recv_type("tracks").expect("tracks announced");
    let relay = Instant::now();
    members[1].send_text(&proposal(&conf, 64)).unwrap();
    members[2]
        .recv_type("handshake")
        .expect("MLS message relayed");
    let relayed_in = relay.elapsed();

    assert!(wait_for(
        || seen.subscription_puts.load(Ordering::SeqCst) == (MEMBERS - 1) as usize
    ));
    let all_in = started.elapsed();
    let max = seen.max_in_flight.load(Ordering::SeqCst);
    eprintln!(
        "publish in a {MEMBERS}-member call: {} updates of {DELAY:?} each done in {all_in:?}, \
         at most {max} at once; an MLS message relayed in {relayed_in:?} meanwhile",
        MEMBERS - 1
    );
    assert!(max >= 2, "the subscription updates ran one at a time");
    assert!(
        relayed_in < DELAY,
        "the key message waited {relayed_in:?} for the forwarder calls"
    );
}
