//! STUN floods: checks are limited per source before any HMAC is computed, answered only
//! when they verify, and a flood from one source does not stop another from latching.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::{Sim, SimConfig};
use common::*;

#[test]
fn a_flood_from_one_source_is_limited_before_the_hmac() {
    let mut sim = Sim::new(SimConfig::default());
    let mut victim = sim.join("f1", "victim");
    // The attacker knows the ufrag (it is not secret) but not the pwd.
    let mut forged = victim.clone();
    forged.pwd = "guessed-password-guessed".into();
    let mut limited = 0;
    for _ in 0..200 {
        let check = forged.check(true);
        let h = sim.receive(other(1), &check.data);
        assert!(h.sent.is_empty(), "an unverifiable check got an answer");
        if h.outcome == Outcome::Dropped(DropReason::StunRateLimited) {
            limited += 1;
        }
    }
    assert_eq!(
        limited, 150,
        "50 checks per second per source, then refused"
    );
    assert_eq!(sim.dropped(DropReason::StunBadIntegrity), 50);
    // The legitimate participant, elsewhere, still latches.
    assert!(sim.latch(&mut victim, addr(1)));
}
