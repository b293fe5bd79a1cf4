//! The placement rules against a real Redis: no live forwarder is a clear error; draining
//! nodes get nothing new; a region is preferred; a home over its budget spills joiners
//! onto the call's other nodes first (a placement counts at once, even in the millisecond
//! of a load report); a later report replaces the claims it reflects; a lapsed node's
//! participants are moved once, however many instances repair the call at the same
//! moment.

mod common;
use common::redis::RedisServer;

use std::sync::Arc;

use blindfold::cluster::placement::HomeChange;
use blindfold::cluster::schema::REPORT_LAG;
use blindfold::cluster::{Budget, Cluster, Error, Load, Registration};

fn reg(id: &str, region: Option<&str>) -> Registration {
    Registration {
        id: id.into(),
        control: format!("http://{id}.invalid:8480"),
        media: vec!["192.0.2.1:10000".parse().unwrap()],
        region: region.map(str::to_string),
        shards: 1,
    }
}

fn load(endpoints: u64) -> Load {
    Load {
        endpoints,
        ..Load::default()
    }
}

fn budget(endpoints: u64) -> Budget {
    Budget {
        endpoints: Some(endpoints),
        copies_per_sec: None,
    }
}

/// What a lapse looks like to placement: the record is gone (its TTL ran out), the
/// index still names it.
async fn lapse(url: &str, id: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let n: u32 = redis::cmd("DEL")
        .arg(format!("bf:node:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn placement_follows_its_rules() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Cluster::connect(&redis.url()).unwrap();
        let none = Budget::default();

        // Nothing registered: a clear, transient error.
        let err = c.place_call("c0", None, none).await.unwrap_err();
        assert!(
            matches!(err, Error::NoForwarder) && err.is_transient(),
            "{err}"
        );

        // Draining nodes get nothing new, however idle.
        c.register(&reg("idle", None), load(0), true).await.unwrap();
        c.register(&reg("busy", None), load(50), false)
            .await
            .unwrap();
        assert_eq!(c.place_call("c1", None, none).await.unwrap().home, "busy");
        c.register(&reg("busy", None), load(50), true)
            .await
            .unwrap();
        assert!(matches!(
            c.place_call("c1b", None, none).await,
            Err(Error::NoForwarder)
        ));
        assert_eq!(
            c.place_call("c1", None, none).await.unwrap().home,
            "busy",
            "an existing call keeps its draining home"
        );
        c.deregister("idle").await.unwrap();
        c.deregister("busy").await.unwrap();

        // Region first, even over load; a joiner from another region goes to its own.
        c.register(&reg("eu1", Some("eu")), load(40), false)
            .await
            .unwrap();
        c.register(&reg("us1", Some("us")), load(0), false)
            .await
            .unwrap();
        let p = c
            .place_participant("c2", "a", Some("eu"), none)
            .await
            .unwrap();
        assert_eq!((p.home.as_str(), p.node.as_str()), ("eu1", "eu1"));
        let p = c
            .place_participant("c2", "b", Some("us"), none)
            .await
            .unwrap();
        assert_eq!((p.home.as_str(), p.node.as_str()), ("eu1", "us1"));
        let p = c.place_participant("c2", "c", None, none).await.unwrap();
        assert_eq!(p.node, "eu1", "no region: the home");
        assert_eq!(
            c.place_participant("c2", "b", None, none)
                .await
                .unwrap()
                .node,
            "us1",
            "a placed participant keeps its node"
        );
        c.deregister("eu1").await.unwrap();
        c.deregister("us1").await.unwrap();

        // Budget: the home takes joiners up to its budget (claims count until the next
        // load report), then the call spills onto one more node, and stays there.
        for id in ["h1", "h2", "h3"] {
            c.register(&reg(id, None), load(0), false).await.unwrap();
        }
        let mut on = Vec::new();
        for i in 0..7 {
            on.push(
                c.place_participant("c3", &format!("m{i}"), None, budget(3))
                    .await
                    .unwrap()
                    .node,
            );
        }
        assert_eq!(on[..3], ["h1", "h1", "h1"], "{on:?}");
        assert_eq!(on[3..6], ["h2", "h2", "h2"], "spills to one node: {on:?}");
        assert_eq!(on[6], "h3", "{on:?}");
        // Every node over budget now: the home takes the overflow (fewer links).
        for id in ["h1", "h2", "h3"] {
            c.register(&reg(id, None), load(10), false).await.unwrap();
        }
        let over = c
            .place_participant("c3", "m7", None, budget(3))
            .await
            .unwrap();
        assert_eq!(over.node, "h1");
        // A report sampled REPORT_LAG after the claims replaces them: h1 reports 0 again.
        let claimed = c.now_ms().await.unwrap();
        while c.now_ms().await.unwrap() <= claimed + REPORT_LAG.as_millis() as u64 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        c.register(&reg("h1", None), load(0), false).await.unwrap();
        let after = c
            .place_participant("c4", "x", None, budget(1))
            .await
            .unwrap();
        assert_eq!(
            after.node, "h1",
            "fresh report, claims before it no longer count"
        );
    });
}

#[test]
fn participants_of_a_lapsed_node_are_moved_exactly_once() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Arc::new(Cluster::connect(&redis.url()).unwrap());
        for id in ["a", "b", "c"] {
            c.register(&reg(id, None), load(0), false).await.unwrap();
        }
        let b2 = budget(2);
        for i in 0..4 {
            c.place_participant("call", &format!("p{i}"), None, b2)
                .await
                .unwrap();
        }
        let (home, before) = c.placement("call").await.unwrap();
        assert_eq!(home.as_deref(), Some("a"));
        assert_eq!(before.values().filter(|n| *n == "a").count(), 2);
        assert_eq!(before.values().filter(|n| *n == "b").count(), 2);
        // Home "a" lapses (its record expires); two instances repair at once.
        lapse(&redis.url(), "a").await;
        let other = Arc::new(Cluster::connect(&redis.url()).unwrap());
        let (r1, r2) = tokio::join!(
            c.relocate_lapsed("call", Budget::default()),
            other.relocate_lapsed("call", Budget::default())
        );
        let (p1, m1) = r1.unwrap();
        let (p2, m2) = r2.unwrap();
        let moves: Vec<_> = m1.iter().chain(&m2).collect();
        assert_eq!(
            moves.len(),
            2,
            "each of a's two participants moved once: {moves:?}"
        );
        assert!(moves.iter().all(|m| m.from == "a" && m.to != "a"));
        let homes = [p1.unwrap(), p2.unwrap()];
        assert_eq!(homes[0].home, homes[1].home);
        assert_ne!(homes[0].home, "a");
        let moved = homes
            .iter()
            .filter(|p| p.home_change == HomeChange::Moved { from: "a".into() })
            .count();
        assert_eq!(moved, 1, "one of the two repairs moved the home");
        let (_, after) = c.placement("call").await.unwrap();
        assert!(after.values().all(|n| n != "a"), "{after:?}");
        assert_eq!(after.len(), 4);
    });
}
