//! Consent freshness (RFC 7675) with simulated time: an endpoint that sends no valid check
//! for the consent timeout stops receiving at that instant, copies to it are counted
//! `no_destination`, the API shows it unlatched, and a fresh check restores it.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::sim::SimConfig;
use common::*;
use std::time::Duration;

#[test]
fn consent_lapses_exactly_at_the_timeout_and_a_fresh_check_restores_it() {
    for shards in [1, 3] {
        let mut call = Call::new(SimConfig {
            shards,
            consent_timeout: Duration::from_secs(30),
            ..SimConfig::default()
        });
        let (b, c) = (call.addr("b"), call.addr("c"));
        // a and c keep their consent fresh; b goes silent.
        for _ in 0..29 {
            call.sim.advance(Duration::from_secs(1));
            for n in ["a", "c"] {
                let from = call.addr(n);
                assert!(call.latch(n, from));
            }
        }
        call.sim.advance(Duration::from_millis(999));
        let h = call.send("a", &rtp(0xA1, 1, 20));
        assert_eq!(
            h.dsts(),
            vec![b, c],
            "1 ms before the timeout b still receives"
        );
        call.sim.advance(Duration::from_millis(1));
        let h = call.send("a", &rtp(0xA1, 2, 20));
        assert_eq!(h.dsts(), vec![c], "at the timeout b stops receiving");
        assert_eq!(call.sim.dropped(DropReason::NoDestination), 1);
        let info = call.sim.model().conference("c1", call.sim.now()).unwrap();
        let eb = info.endpoints.iter().find(|e| e.id == "b").unwrap();
        assert!(!eb.latched);
        assert_eq!(eb.consent_expires_in, Some(Duration::ZERO));

        assert!(call.latch("b", b));
        let h = call.send("a", &rtp(0xA1, 3, 20));
        assert_eq!(h.dsts(), vec![b, c], "a fresh check restores b");
    }
}
