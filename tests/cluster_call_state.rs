//! The call state two signalling instances share through Redis: joins get atomic join
//! orders and a snapshot tied to a stream cursor; every change reaches every instance's
//! follower once, in order; messages go to members only; a member's lease belongs to the
//! instance holding its connection and moves with a resume; a lapsed lease removes the
//! member; and nothing of the call outlives it.

mod common;
use common::redis::RedisServer;

use std::time::Duration;

use blindfold::cluster::bus::Follower;
use blindfold::cluster::schema::ENDED_TTL;
use blindfold::cluster::{Cluster, Error, Event, EventKind};
use serde_json::json;
use tokio::sync::mpsc;

const CALL: &str = "00112233445566778899aabbccddeeff";
const P1: &str = "11111111111111111111111111111111";
const P2: &str = "22222222222222222222222222222222";
const P3: &str = "33333333333333333333333333333333";

async fn next(rx: &mut mpsc::Receiver<(String, Event)>) -> Event {
    let (call, ev) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within the deadline")
        .expect("the follower runs");
    assert_eq!(call, CALL);
    ev
}

async fn quiet(rx: &mut mpsc::Receiver<(String, Event)>) {
    // Nothing more is queued: one more bus round (the block is 1 s) brings nothing.
    if let Ok(Some((_, ev))) = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await {
        panic!("unexpected event {ev:?}");
    }
}

#[test]
fn two_instances_share_one_call_through_redis() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = Cluster::connect(&redis.url()).unwrap();
        let b = Cluster::connect(&redis.url()).unwrap();
        let (atx, mut arx) = mpsc::channel(64);
        let (btx, mut brx) = mpsc::channel(64);
        let fa = Follower::spawn(&a, atx);
        let fb = Follower::spawn(&b, btx);

        let j1 = a
            .join(CALL, P1, "inst-a", &json!({"key": "aa"}))
            .await
            .unwrap();
        assert_eq!(j1.order, 1);
        assert_eq!(j1.state.members.len(), 1);
        fa.follow(CALL, &j1.state.cursor).unwrap();
        let j2 = b
            .join(CALL, P2, "inst-b", &json!({"key": "bb"}))
            .await
            .unwrap();
        assert_eq!(j2.order, 2);
        let ids: Vec<_> = j2
            .state
            .members
            .iter()
            .map(|m| m.participant.as_str())
            .collect();
        assert_eq!(ids, [P1, P2], "the snapshot holds everyone, in join order");
        assert_eq!(j2.state.member(P1).unwrap().info, json!({"key": "aa"}));
        assert_eq!(
            j2.state.member(P1).unwrap().owner.as_deref(),
            Some("inst-a")
        );
        fb.follow(CALL, &j2.state.cursor).unwrap();

        // A sees B's join; B's snapshot already had A's, so B's follower starts after it.
        let ev = next(&mut arx).await;
        assert_eq!((ev.kind, ev.from.as_str()), (EventKind::Joined, P2));
        assert!(matches!(
            b.join(CALL, P1, "inst-b", &json!({})).await,
            Err(Error::Taken)
        ));

        // Tracks, subscriptions and messages reach both followers, in the same order.
        a.set_tracks(
            CALL,
            P1,
            &json!([{"id": "mic", "kind": "audio", "ssrcs": [1]}]),
        )
        .await
        .unwrap();
        b.set_subscription(CALL, P2, &json!(null)).await.unwrap();
        b.send(CALL, P2, Some(P1), "{\"sealed\":\"00ff\"}")
            .await
            .unwrap();
        a.send(CALL, P1, None, "{\"commit\":\"0a\"}").await.unwrap();
        for rx in [&mut arx, &mut brx] {
            let kinds: Vec<(EventKind, String, Option<String>)> = {
                let mut v = Vec::new();
                for _ in 0..4 {
                    let e = next(rx).await;
                    v.push((e.kind, e.from, e.to));
                }
                v
            };
            assert_eq!(
                kinds,
                [
                    (EventKind::Tracks, P1.to_string(), None),
                    (EventKind::Subscriptions, P2.to_string(), None),
                    (EventKind::Message, P2.to_string(), Some(P1.to_string())),
                    (EventKind::Message, P1.to_string(), None),
                ]
            );
        }
        // Only members send and receive.
        assert!(matches!(
            a.send(CALL, P1, Some(P3), "{}").await,
            Err(Error::NotMember)
        ));
        assert!(matches!(
            a.send(CALL, P3, None, "{}").await,
            Err(Error::NotMember)
        ));
        assert!(matches!(
            a.send(CALL, P1, None, "not json").await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            a.join(CALL, "10.0.0.1:5000", "inst-a", &json!({})).await,
            Err(Error::Invalid(_))
        ));

        // Leases: only the holder renews; a resume moves the member to the other instance.
        let held = vec![P1.to_string()];
        assert!(
            a.renew(CALL, "inst-a", &held, Duration::from_secs(15))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            b.renew(CALL, "inst-b", &held, Duration::from_secs(15))
                .await
                .unwrap(),
            held
        );
        let r = b.resume(CALL, P1, "inst-b").await.unwrap();
        assert_eq!(r.order, 1, "a resume keeps the join order");
        assert_eq!(r.state.member(P1).unwrap().owner.as_deref(), Some("inst-b"));
        assert_eq!(
            a.renew(CALL, "inst-a", &held, Duration::from_secs(15))
                .await
                .unwrap(),
            held
        );
        for rx in [&mut arx, &mut brx] {
            let e = next(rx).await;
            assert_eq!((e.kind, e.from.as_str()), (EventKind::Resumed, P1));
        }

        // A lapsed lease (its instance went silent) removes the member, once.
        let p2 = vec![P2.to_string()];
        b.renew(CALL, "inst-b", &p2, Duration::from_millis(50))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (ra, rb) = tokio::join!(a.reap(CALL), b.reap(CALL));
        let reaped: Vec<String> = ra.unwrap().into_iter().chain(rb.unwrap()).collect();
        assert_eq!(reaped, p2, "reaped once by whichever instance came first");
        for rx in [&mut arx, &mut brx] {
            let e = next(rx).await;
            assert_eq!(
                (e.kind, e.from.as_str(), e.body.as_str()),
                (EventKind::Left, P2, "lease")
            );
        }
        let st = a.call_state(CALL).await.unwrap();
        assert_eq!(st.members.len(), 1);

        // The last leave ends the call: every key of it expires within ENDED_TTL.
        let (_, remaining) = b.leave(CALL, P1).await.unwrap();
        assert_eq!(remaining, 0);
        for rx in [&mut arx, &mut brx] {
            let e = next(rx).await;
            assert_eq!((e.kind, e.from.as_str()), (EventKind::Left, P1));
            quiet(rx).await;
        }
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys = a.keys().await.unwrap();
        assert!(!keys.is_empty());
        for k in &keys {
            assert!(k.starts_with(&format!("bf:call:{{{CALL}}}:")), "{k}");
            let ttl: i64 = redis::cmd("PTTL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(
                ttl > 0 && ttl <= ENDED_TTL.as_millis() as i64,
                "{k} expires with the call (pttl {ttl})"
            );
        }
        let deadline = tokio::time::Instant::now() + ENDED_TTL + Duration::from_secs(5);
        while !a.keys().await.unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the ended call's keys expire"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop((fa, fb));
    });
}
