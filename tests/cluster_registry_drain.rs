//! SIGTERM marks a registered forwarder draining at once: placement sends every new call
//! elsewhere while its own call goes on; once drained it exits and deletes its record
//! (no waiting for the TTL).

mod common;
use common::redis::{ClusterClient, RedisServer, within};
use common::*;

#[test]
fn sigterm_marks_the_node_draining_and_placement_avoids_it() {
    let redis = RedisServer::start();
    let url = redis.url();
    let c = ClusterClient::new(&url);
    let mut a = ServeProcess::start(
        1,
        &[
            "--redis",
            &url,
            "--node-id",
            "fwd-a",
            "--drain-timeout",
            "60",
        ],
    );
    let b = ServeProcess::start(1, &["--redis", &url, "--node-id", "fwd-b"]);
    assert!(within(DEADLINE, || c.nodes().len() == 2).is_some());
    // fwd-b carries more (five endpoints to a's four), so while a is live placement
    // picks a: the control case shows that draining, not load, decides below.
    let call = Call::on(a.media, a.control);
    let other = Call::on(b.media, b.control);
    other.api.endpoint("c1", "extra");
    assert!(
        within(DEADLINE, || {
            let n = c.nodes();
            n.len() == 2
                && n.iter()
                    .all(|n| n.load.endpoints == if n.registration.id == "fwd-a" { 4 } else { 5 })
        })
        .is_some(),
        "both report their endpoints"
    );
    let before = c
        .block_on(c.cluster.place_call("before", None, Default::default()))
        .unwrap();
    assert_eq!(
        before.home, "fwd-a",
        "the control: the less loaded a wins while live"
    );
    let pid = a.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let seen = within(DEADLINE, || c.node("fwd-a").is_some_and(|n| n.draining))
        .expect("the registration says draining");
    eprintln!("draining visible in Redis {seen:?} after SIGTERM");
    for i in 0..20 {
        let placed = c
            .block_on(
                c.cluster
                    .place_call(&format!("new-{i}"), None, Default::default()),
            )
            .unwrap();
        assert_eq!(placed.home, "fwd-b", "nothing new lands on a draining node");
    }
    let kept = c
        .block_on(c.cluster.place_call("before", None, Default::default()))
        .unwrap();
    assert_eq!(
        kept.home, "fwd-a",
        "a call already homed there stays (draining keeps calls)"
    );
    // Its call still flows.
    let p = rtp(0xA1, 7, 40);
    call.peer("a").send(&p);
    let mut o = Vec::new();
    call.peer("b")
        .recv_until(|x| x == p.as_slice(), &mut o)
        .expect("the call goes on while draining");
    // Ending its last conference lets it exit, and it deletes its record on the way out.
    for conf in call.api.list().conferences {
        call.api
            .client()
            .delete_conference(&conf.id)
            .expect("delete conference");
    }
    assert!(
        within(3 * DEADLINE, || !a.alive()).is_some(),
        "the drained forwarder exits; log:\n{}",
        a.logs()
    );
    assert!(
        c.node("fwd-a").is_none(),
        "a clean exit deletes the record at once (not after the TTL)"
    );
    assert!(c.node("fwd-b").is_some());
}
