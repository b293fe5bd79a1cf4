//! NAT rebinding: a verified check from a new address moves the endpoint; the old address
//! stops receiving at once and can no longer send.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use common::*;

#[test]
fn a_check_from_a_new_address_moves_the_endpoint() {
    with_shards(|mut call| {
        let (old, new) = (call.addr("b"), other(2));
        let mut b = call.agent("b").clone();
        assert!(call.sim.latch(&mut b, new));
        assert_eq!(call.sim.endpoint_at(new), Some(b.ep));
        assert_eq!(call.sim.endpoint_at(old), None);
        let h = call.send("a", &rtp(0xA1, 1, 20));
        assert_eq!(h.dsts(), vec![new, call.addr("c")]);
        let h = call.sim.receive(old, &rtp(0xB1, 1, 20));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
        assert_eq!(call.sim.counters().latches, 5, "four latches and one move");
    });
}
