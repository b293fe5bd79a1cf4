//! Full ICE against the ICE-lite forwarder (RFC 8445 §7.3.1.5, §8.2): an agent with two
//! host candidates checks both pairs, nominates one (USE-CANDIDATE) and keeps checking
//! both. Media follows the nominated pair only; checks on the other pair never move it,
//! and the nominated pair's own checks keep its consent fresh.

mod common;
use blindfold_proto::sim::SimConfig;
use common::*;
use std::time::Duration;

#[test]
fn media_follows_the_nominated_pair_while_the_agent_checks_both() {
    for shards in [1, 3] {
        let mut call = Call::new(SimConfig {
            shards,
            ..SimConfig::default()
        });
        let mut e = call.sim.join("c1", "e");
        call.sim
            .control(|m| m.set_subscriptions("c1", "e", vec![sub("a", "mic")]))
            .unwrap();
        let (host1, host2) = (other(1), other(2));
        let mut seq = 0;
        let mut media_to = |call: &mut Call| {
            seq += 1;
            let h = call.send("a", &rtp(0xA1, seq, 20));
            [host1, host2]
                .into_iter()
                .filter(|&a| h.to(a).next().is_some())
                .collect::<Vec<_>>()
        };

        // Connectivity checks on both pairs, no nomination yet: no media anywhere.
        assert!(call.sim.check(&mut e, host1, false));
        assert!(call.sim.check(&mut e, host2, false));
        assert_eq!(media_to(&mut call), vec![], "media before any nomination");

        // The controlling agent nominates host 1.
        assert!(call.sim.check(&mut e, host1, true));
        assert_eq!(media_to(&mut call), vec![host1]);

        // It keeps checking both pairs for 45 s (past the 30 s consent timeout).
        for _ in 0..45 {
            call.sim.advance(Duration::from_secs(1));
            assert!(call.sim.check(&mut e, host2, false));
            assert_eq!(
                media_to(&mut call),
                vec![host1],
                "a check on the other pair moved media"
            );
            assert!(call.sim.check(&mut e, host1, false));
            assert_eq!(media_to(&mut call), vec![host1]);
        }

        // Nominating the other pair moves media there.
        assert!(call.sim.check(&mut e, host2, true));
        assert_eq!(media_to(&mut call), vec![host2]);
    }
}
