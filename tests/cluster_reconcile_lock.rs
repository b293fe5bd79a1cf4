//! One instance at a time reconciles a call's forwarders, and no change is lost: a change
//! made while another instance holds the lock marks the call dirty, and the holder goes
//! round again before it lets go; a holder that died loses the lock by its TTL.

mod common;
use common::redis::RedisServer;

use std::time::Duration;

use blindfold::cluster::Cluster;
use blindfold::cluster::call::Unlock;

#[test]
fn the_reconcile_lock_never_loses_a_change() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = Cluster::connect(&redis.url()).unwrap();
        let b = Cluster::connect(&redis.url()).unwrap();
        let ttl = Duration::from_secs(10);
        assert!(a.lock_call("c", "inst-a", ttl).await.unwrap());
        assert!(
            a.lock_call("c", "inst-a", ttl).await.unwrap(),
            "re-entrant for its holder"
        );
        // B changed the call and wants to reconcile: busy, but the change is noted.
        assert!(!b.lock_call("c", "inst-b", ttl).await.unwrap());
        assert_eq!(
            a.unlock_call("c", "inst-a", ttl).await.unwrap(),
            Unlock::Again
        );
        assert_eq!(
            a.unlock_call("c", "inst-a", ttl).await.unwrap(),
            Unlock::Released
        );
        assert_eq!(
            b.unlock_call("c", "inst-b", ttl).await.unwrap(),
            Unlock::Lost
        );
        assert!(b.lock_call("c", "inst-b", ttl).await.unwrap());
        assert_eq!(
            b.unlock_call("c", "inst-b", ttl).await.unwrap(),
            Unlock::Released
        );

        // A holder that dies loses the lock when its TTL runs out.
        assert!(
            a.lock_call("d", "inst-a", Duration::from_millis(200))
                .await
                .unwrap()
        );
        assert!(!b.lock_call("d", "inst-b", ttl).await.unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !b.lock_call("d", "inst-b", ttl).await.unwrap() {
            assert!(tokio::time::Instant::now() < deadline, "the lock expires");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            a.unlock_call("d", "inst-a", ttl).await.unwrap(),
            Unlock::Lost
        );
        // The dead holder's dirty mark went with its lock: B takes it fresh.
        assert_eq!(
            b.unlock_call("d", "inst-b", ttl).await.unwrap(),
            Unlock::Released
        );

        // The audit dump sees every key with its content.
        let dump = a.dump().await.unwrap();
        assert!(dump.iter().all(|(k, _)| k.starts_with("bf:")), "{dump:?}");
    });
}
