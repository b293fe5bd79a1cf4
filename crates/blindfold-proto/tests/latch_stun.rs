//! STUN latching: a Binding request that verifies with the endpoint's pwd is answered
//! (XOR-MAPPED-ADDRESS is the source) and latches the source; a wrong pwd gets no answer
//! and latches nothing.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::{MEDIA_ADDR, Sim, SimConfig};
use blindfold_proto::stun;
use common::*;

#[test]
fn the_right_pwd_latches_and_a_wrong_one_does_not() {
    for shards in [1, 3] {
        let mut sim = Sim::new(SimConfig {
            shards,
            ..SimConfig::default()
        });
        let mut publisher = sim.join("s1", "pub");
        let mut subscriber = sim.join("s1", "sub");
        sim.control(|m| {
            m.set_tracks(
                "s1",
                "pub",
                vec![track("mic", blindfold_proto::model::TrackKind::Audio, &[7])],
            )
        })
        .unwrap();
        sim.control(|m| m.set_subscriptions("s1", "sub", vec![sub("pub", "mic")]))
            .unwrap();

        // An intruder knows the subscriber's ufrag (it is not secret) but not its pwd.
        let mut forged = subscriber.clone();
        forged.pwd = "not-the-password-at-all!".into();
        let check = forged.check(true);
        let h = sim.receive(other(1), &check.data);
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::StunBadIntegrity));
        assert!(h.sent.is_empty(), "a wrong pwd gets no answer");
        assert_eq!(sim.endpoint_at(other(1)), None);
        assert!(
            sim.model()
                .conference("s1", sim.now())
                .unwrap()
                .endpoints
                .iter()
                .all(|e| !e.latched)
        );

        // The right pwd: answered with the source as XOR-MAPPED-ADDRESS, and latched once
        // the agent has answered the forwarder's own check from there.
        let check = subscriber.check(true);
        let h = sim.receive(addr(2), &check.data);
        let mapped = h.to(addr(2)).find_map(|d| {
            stun::parse_binding_success(d, &check.txid, subscriber.pwd.as_bytes()).ok()
        });
        assert_eq!(mapped, Some(addr(2)));
        let answers: Vec<_> = h
            .to(addr(2))
            .filter_map(|d| subscriber.answer(d, MEDIA_ADDR))
            .collect();
        assert_eq!(
            answers.len(),
            1,
            "the forwarder checks the new address once"
        );
        assert_eq!(sim.endpoint_at(addr(2)), None, "no media before the answer");
        sim.receive(addr(2), &answers[0]);
        assert!(sim.latch(&mut publisher, addr(1)));
        assert_eq!(sim.endpoint_at(addr(2)), Some(subscriber.ep));
        let info = sim.model().conference("s1", sim.now()).unwrap();
        assert!(info.endpoints.iter().all(|e| e.latched));

        let p = rtp(7, 1, 50);
        let h = sim.receive(addr(1), &p);
        assert_eq!(h.dsts(), vec![addr(2)]);
        assert!(
            sim.latch(&mut publisher, addr(1)),
            "a refresh is answered too"
        );
    }
}
