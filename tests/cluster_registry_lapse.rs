//! `serve --redis` registers itself (node id, control URL, media candidate, region,
//! shards) and reports its load; a forwarder killed with SIGKILL disappears from the
//! registry within its 5 s TTL, and placement stops choosing it.

mod common;
use common::redis::{ClusterClient, RedisServer, within};
use common::*;
use std::time::Duration;

use blindfold::cluster::schema::NODE_TTL;

#[test]
fn a_killed_forwarder_lapses_from_the_registry_within_its_ttl() {
    let redis = RedisServer::start();
    let url = redis.url();
    let c = ClusterClient::new(&url);
    let mut a = ServeProcess::start(
        1,
        &["--redis", &url, "--node-id", "fwd-a", "--region", "lab-1"],
    );
    let b = ServeProcess::start(1, &["--redis", &url, "--node-id", "fwd-b"]);
    assert!(
        within(DEADLINE, || c.nodes().len() == 2).is_some(),
        "both forwarders register; a's log:\n{}",
        a.logs()
    );
    let rec = c.node("fwd-a").expect("fwd-a is registered");
    assert_eq!(rec.registration.control, format!("http://{}", a.control));
    assert_eq!(rec.registration.media, vec![a.media]);
    assert_eq!(rec.registration.region.as_deref(), Some("lab-1"));
    assert_eq!(rec.registration.shards, 1);
    assert!(!rec.draining);
    assert_eq!(c.node("fwd-b").unwrap().registration.region, None);

    // The load it reports follows what it carries: a call of four endpoints, and copies
    // per second while media flows.
    let call = Call::on(a.media, a.control);
    let mut seq = 0u16;
    let loaded = within(DEADLINE, || {
        for _ in 0..20 {
            seq = seq.wrapping_add(1);
            call.peer("a").send(&rtp(0xA1, seq, 100));
        }
        c.node("fwd-a")
            .is_some_and(|n| n.load.endpoints == 4 && n.load.copies_per_sec > 0)
    });
    assert!(
        loaded.is_some(),
        "load reaches the registry: {:?}",
        c.node("fwd-a")
    );

    // kill -9: no deregistration, the record must lapse by its TTL alone.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let lapse = within(NODE_TTL + Duration::from_secs(5), || {
        c.node("fwd-a").is_none()
    })
    .expect("the killed forwarder's record lapses");
    eprintln!("registration lapsed {lapse:?} after kill -9 (TTL {NODE_TTL:?})");
    assert!(
        lapse <= NODE_TTL + Duration::from_secs(1),
        "lapsed within TTL + one refresh, took {lapse:?}"
    );
    let ids: Vec<String> = c.nodes().into_iter().map(|n| n.registration.id).collect();
    assert_eq!(ids, ["fwd-b"], "the other forwarder is still registered");
    let placed = c
        .block_on(
            c.cluster
                .place_call("call-after-kill", None, Default::default()),
        )
        .unwrap();
    assert_eq!(
        placed.home, "fwd-b",
        "placement no longer picks the dead node"
    );
    drop(b);
}
