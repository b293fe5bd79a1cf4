//! The bus follower outlives Redis: killed and restarted under it, the follower
//! reconnects by itself and delivers what is written after the restart; and following a
//! new call wakes it at once, not at the end of its current blocking read.

mod common;
use common::redis::RedisServer;

use std::time::{Duration, Instant};

use blindfold::cluster::bus::Follower;
use blindfold::cluster::{Cluster, Event, EventKind};
use serde_json::json;
use tokio::sync::mpsc;

async fn next(rx: &mut mpsc::Receiver<(String, Event)>) -> (String, Event) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("the follower runs")
}

#[test]
fn the_follower_reconnects_after_a_redis_restart() {
    let mut redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Cluster::connect(&redis.url()).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let f = Follower::spawn(&c, tx);
        let j = c.join("call-a", "p1", "i1", &json!({})).await.unwrap();
        f.follow("call-a", &j.state.cursor).unwrap();
        // Let the follower enter its blocking read on call-a, then follow another call:
        // the wake (CLIENT UNBLOCK) must deliver call-b's event well before the block's
        // end would have (1 s), every time.
        c.join("call-a", "p2", "i1", &json!({})).await.unwrap();
        assert_eq!(next(&mut rx).await.1.from, "p2");
        for i in 0..3 {
            let call = format!("call-b{i}");
            let j = c.join(&call, "q1", "i1", &json!({})).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = Instant::now();
            f.follow(&call, &j.state.cursor).unwrap();
            c.join(&call, "q2", "i1", &json!({})).await.unwrap();
            let (got, ev) = next(&mut rx).await;
            assert_eq!((got.as_str(), ev.from.as_str()), (call.as_str(), "q2"));
            assert!(
                t.elapsed() < Duration::from_millis(900),
                "woken at once, took {:?}",
                t.elapsed()
            );
        }

        tokio::task::block_in_place(|| {
            redis.kill();
            redis.spawn();
        });
        // The restarted Redis is empty: the call is started again; its new entries have
        // later ids than the follower's cursor, so they are delivered.
        let deadline = Instant::now() + Duration::from_secs(10);
        let j = loop {
            match c.join("call-a", "p3", "i1", &json!({})).await {
                Ok(j) => break j,
                Err(e) => {
                    assert!(Instant::now() < deadline, "Redis answers again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        assert_eq!(j.order, 1, "a fresh call after the restart");
        let (call, ev) = next(&mut rx).await;
        assert_eq!(
            (call.as_str(), ev.kind, ev.from.as_str()),
            ("call-a", EventKind::Joined, "p3")
        );
    });
}
