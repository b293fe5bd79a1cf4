//! Redis restarted (killed, started again empty) under a registered forwarder: media
//! never stops, and the registration is back within a few refreshes, without any help.

mod common;
use common::redis::{ClusterClient, RedisServer, within};
use common::*;
use std::time::Duration;

#[test]
fn registrations_recover_after_a_redis_restart_and_media_never_stops() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let a = ServeProcess::start(1, &["--redis", &url, "--node-id", "fwd-a"]);
    let c = ClusterClient::new(&url);
    assert!(within(DEADLINE, || c.node("fwd-a").is_some()).is_some());
    let call = Call::on(a.media, a.control);
    let mut seq = 0u16;
    let mut flows = || {
        seq = seq.wrapping_add(1);
        let p = rtp(0xA1, seq, 60);
        call.peer("a").send(&p);
        let mut o = Vec::new();
        call.peer("b")
            .recv_until(|x| x == p.as_slice(), &mut o)
            .is_some()
    };
    assert!(flows());

    redis.kill();
    assert!(!redis.ping());
    // Media is the forwarder's own business: it goes on without Redis.
    for _ in 0..5 {
        assert!(flows(), "media flows while Redis is down");
    }
    redis.spawn();
    assert!(c.node("fwd-a").is_none(), "a restarted Redis starts empty");
    let back = within(DEADLINE, || c.node("fwd-a").is_some())
        .expect("the registration comes back by itself");
    eprintln!("registration back {back:?} after Redis restarted");
    assert!(
        back <= Duration::from_secs(5),
        "back within a few refreshes, took {back:?}"
    );
    assert!(flows(), "media flows after the restart");
    // Placement works again against the recovered registry.
    let placed = c
        .block_on(
            c.cluster
                .place_call("after-restart", None, Default::default()),
        )
        .unwrap();
    assert_eq!(placed.home, "fwd-a");
}
