//! Issue 14 item 2 against the real process: a captured valid check replayed every
//! 100 ms from other ports moves nothing. The participant keeps all of its media, the
//! replaying ports get none, and the API keeps reporting it latched.

mod common;
use blindfold::proto::stun as ice;
use common::*;
use std::time::Duration;

#[test]
fn replaying_a_captured_check_from_other_ports_moves_nothing() {
    let serve = ServeProcess::start(2, &[]);
    let call = Call::on(serve.media, serve.control);
    let (a, b, c) = (call.peer("a"), call.peer("b"), call.peer("c"));
    let creds = &call.creds[1];
    // b's next consent check, captured on the path.
    let captured =
        ice::binding_request(rand::random(), &creds.ufrag, "client", creds.pwd.as_bytes());
    b.send(&captured);
    // Eight replaying ports, so that some land on each shard.
    let attackers: Vec<Peer> = (0..8).map(|_| Peer::new(serve.media)).collect();
    let mut sent = 0u16;
    for round in 0..40 {
        for at in &attackers {
            at.send(&captured);
        }
        for _ in 0..5 {
            a.send(&rtp(0xA1, sent, 100));
            sent += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = call.api.get("c1");
        assert!(state.endpoint("b").unwrap().latched, "round {round}");
    }
    let last = rtp(0xA1, sent - 1, 100);
    let mut skip = Vec::new();
    c.recv_until(|p| p == last.as_slice(), &mut skip).unwrap();
    let mut b_got = 0;
    assert!(
        wait_for(|| {
            b_got += b.drain().iter().filter(|p| rtp_id(p).is_some()).count();
            b_got == usize::from(sent)
        }),
        "b received {b_got} of {sent}"
    );
    for at in &attackers {
        assert!(
            at.drain().iter().all(|p| rtp_id(p).is_none()),
            "a replaying port received b's media"
        );
    }
}
