//! Placement is one atomic claim: many signalling instances placing the same new call at
//! the same moment all get the same home (and exactly one of them created it), and a
//! burst of new calls spreads over the forwarders instead of piling onto the one that
//! looked emptiest at the last load report.

mod common;
use common::redis::RedisServer;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use blindfold::cluster::placement::HomeChange;
use blindfold::cluster::{Budget, Cluster, Load, Registration};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Registers three equally loaded forwarders (their addresses are documentation
/// addresses: no packet goes anywhere in this test).
async fn three_nodes(c: &Cluster) {
    for (i, id) in ["n1", "n2", "n3"].into_iter().enumerate() {
        let reg = Registration {
            id: id.into(),
            control: format!("http://192.0.2.{}:8480", i + 1),
            media: vec![format!("192.0.2.{}:10000", i + 1).parse().unwrap()],
            region: None,
            shards: 2,
        };
        c.register(&reg, Load::default(), false).await.unwrap();
    }
}

/// Handles with their own connections, as separate signalling instances would have.
fn instances(url: &str, n: usize) -> Vec<Arc<Cluster>> {
    (0..n)
        .map(|_| Arc::new(Cluster::connect(url).unwrap()))
        .collect()
}

#[test]
fn concurrent_placements_of_one_new_call_agree_on_one_home() {
    let redis = RedisServer::start();
    let rt = runtime();
    rt.block_on(async {
        let handles = instances(&redis.url(), 4);
        three_nodes(&handles[0]).await;
        let budget = Budget {
            endpoints: Some(1000),
            copies_per_sec: None,
        };
        // 64 distinct joiners of one new call at once, spread over four instances: each
        // placement also claims load, so a read-then-write placement would see the loads
        // move under it and answer differently.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let c = handles[i % handles.len()].clone();
            tasks.spawn(async move {
                c.place_participant("race", &format!("p{i:02}"), None, budget)
                    .await
                    .unwrap()
            });
        }
        let mut homes = BTreeSet::new();
        let mut created = 0;
        let mut nodes = BTreeSet::new();
        while let Some(r) = tasks.join_next().await {
            let placed = r.unwrap();
            homes.insert(placed.home.clone());
            nodes.insert(placed.node.clone());
            if placed.home_change == HomeChange::Created {
                created += 1;
            }
        }
        assert_eq!(homes.len(), 1, "one home: {homes:?}");
        assert_eq!(created, 1, "exactly one placement created it");
        assert_eq!(nodes, homes, "under budget, everyone joins the home");
        let (home, map) = handles[0].placement("race").await.unwrap();
        assert_eq!(home.as_ref(), homes.first());
        assert_eq!(map.len(), 64);

        // The same participant placed by everyone at once: one answer.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32 {
            let c = handles[i % handles.len()].clone();
            tasks.spawn(async move {
                c.place_participant("race-2", "same", None, budget)
                    .await
                    .unwrap()
                    .node
            });
        }
        let mut answers = BTreeSet::new();
        while let Some(r) = tasks.join_next().await {
            answers.insert(r.unwrap());
        }
        assert_eq!(answers.len(), 1, "{answers:?}");
    });
}

#[test]
fn a_burst_of_new_calls_spreads_over_the_forwarders() {
    let redis = RedisServer::start();
    let rt = runtime();
    rt.block_on(async {
        let handles = instances(&redis.url(), 2);
        three_nodes(&handles[0]).await;
        // 30 calls of 3 members placed within one load-report period: the reported loads
        // are all 0, only the claims tell the nodes apart.
        let mut tasks = tokio::task::JoinSet::new();
        for call in 0..30 {
            for m in 0..3 {
                let c = handles[(call + m) % handles.len()].clone();
                tasks.spawn(async move {
                    let placed = c
                        .place_participant(
                            &format!("call{call}"),
                            &format!("m{m}"),
                            None,
                            Budget::default(),
                        )
                        .await
                        .unwrap();
                    (call, placed)
                });
            }
        }
        let mut home_of: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let (call, placed) = r.unwrap();
            assert_eq!(placed.node, placed.home, "no budget: members join the home");
            home_of.entry(call).or_default().insert(placed.home);
        }
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for homes in home_of.values() {
            assert_eq!(homes.len(), 1, "each call has one home");
            *per_node.entry(homes.first().unwrap().clone()).or_default() += 1;
        }
        eprintln!("calls per forwarder: {per_node:?}");
        assert_eq!(per_node.len(), 3, "every forwarder got calls: {per_node:?}");
        // Without claims every call would go to n1 (all report 0, ties go by id). A
        // call's home is chosen when its first member arrives, before the other two
        // claim, so the spread is even only up to the interleaving.
        assert!(
            per_node.values().all(|&n| (5..=15).contains(&n)),
            "spread (10 each, give or take the interleaving): {per_node:?}"
        );
    });
}
