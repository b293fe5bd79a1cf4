//! A forwarder whose Redis is unreachable starts and forwards all the same; its registry
//! retries quietly (one warning, not one per attempt) and registers by itself once Redis
//! answers.

mod common;
use common::redis::{ClusterClient, RedisServer, within};
use common::*;
use std::time::Duration;

#[test]
fn serve_forwards_without_redis_and_registers_once_it_answers() {
    let mut redis = RedisServer::not_started();
    let url = redis.url();
    let started = std::time::Instant::now();
    let a = ServeProcess::start(1, &["--redis", &url, "--node-id", "fwd-a"]);
    // A full call on the forwarder while Redis has never been there.
    let call = Call::on(a.media, a.control);
    for seq in 0..5u16 {
        let p = rtp(0xA1, seq, 60);
        call.peer("a").send(&p);
        let mut o = Vec::new();
        call.peer("c")
            .recv_until(|x| x == p.as_slice(), &mut o)
            .expect("media flows without Redis");
    }
    // Several refresh periods of failures...
    assert!(
        within(DEADLINE, || a.logs().contains("registry: refresh failed")).is_some(),
        "the failure is logged; log:\n{}",
        a.logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    // ...make one warning, not one per attempt.
    let warnings = a.logs().matches("registry: refresh failed").count() as u64;
    let allowed = 1 + started.elapsed().as_secs() / 10;
    assert!(
        warnings <= allowed,
        "one warning per 10 s at most ({warnings} in {:?}); log:\n{}",
        started.elapsed(),
        a.logs()
    );

    redis.spawn();
    let c = ClusterClient::new(&url);
    let took = within(DEADLINE, || c.node("fwd-a").is_some())
        .expect("the forwarder registers once Redis answers");
    eprintln!("registered {took:?} after Redis came up");
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    assert!(
        within(DEADLINE, || a.logs().contains("registry: registered")).is_some(),
        "the recovery is logged"
    );
    let n = c.node("fwd-a").unwrap();
    assert_eq!(
        n.load.endpoints, 4,
        "it reports the call it carried all along"
    );
}
