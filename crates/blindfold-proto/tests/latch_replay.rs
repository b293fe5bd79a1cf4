//! STUN replay: a captured valid check replayed from another address is refused (its
//! transaction id was already seen for that endpoint from a different address): no
//! answer, nothing moves, counted `stun_replayed`. A retransmission from the same address
//! is answered as before.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::SimConfig;
use common::*;
use std::time::Duration;

#[test]
fn a_replayed_check_from_another_address_moves_nothing() {
    let mut call = Call::new(SimConfig::default());
    let b = call.addr("b");
    // b's next consent check, captured on the path.
    let captured = call.agent("b").check(true);
    let h = call.sim.receive(b, &captured.data);
    assert!(h.to(b).any(|d| call.agents[1].verifies(&captured, d)));
    // Replayed every 100 ms for 8 s from the attacker's address.
    let attacker = other(9);
    for i in 0..80u16 {
        call.sim.advance(Duration::from_millis(100));
        let h = call.sim.receive(attacker, &captured.data);
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::StunReplayed));
        assert!(h.sent.is_empty(), "the replay was answered");
        let h = call.send("a", &rtp(0xA1, i, 20));
        assert_eq!(h.dsts(), vec![b, call.addr("c")], "media left b");
    }
    assert_eq!(call.sim.dropped(DropReason::StunReplayed), 80);
    assert_eq!(call.sim.endpoint_at(attacker), None);
    // The genuine agent's retransmission, from its own address, is still answered.
    let h = call.sim.receive(b, &captured.data);
    assert!(h.to(b).any(|d| call.agents[1].verifies(&captured, d)));
}

/// With several shards a replay may reach one that never saw the transaction id. It is
/// answered there like any new check, and still moves nothing: the forwarder's own
/// check to the replaying address goes unanswered.
#[test]
fn a_replay_on_a_shard_that_never_saw_it_moves_nothing_either() {
    let mut call = Call::new(SimConfig {
        shards: 3,
        ..SimConfig::default()
    });
    let b = call.addr("b");
    let captured = call.agent("b").check(true);
    call.sim.receive(b, &captured.data);
    let attackers: Vec<_> = (0..12).map(other).collect();
    assert!(
        attackers
            .iter()
            .any(|&a| call.sim.shard_of(a) != call.sim.shard_of(b)),
        "some replays reach another shard"
    );
    for (i, &at) in attackers.iter().enumerate() {
        let h = call.sim.receive(at, &captured.data);
        assert!(
            h.sent
                .iter()
                .all(|s| s.data.first().is_some_and(|b| b >> 6 == 0))
        );
        let h = call.send("a", &rtp(0xA1, i as u16, 20));
        assert_eq!(h.dsts(), vec![b, call.addr("c")], "media left b");
        assert_eq!(call.sim.endpoint_at(at), None);
    }
}
