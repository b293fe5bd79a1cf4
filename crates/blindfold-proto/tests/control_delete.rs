//! Deleting an endpoint stops its traffic at once, both ways; deleting a conference stops
//! all of its endpoints.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use common::*;

#[test]
fn a_deleted_endpoint_neither_receives_nor_sends() {
    with_shards(|mut call| {
        let h = call.send("a", &rtp(0xA1, 1, 30));
        assert_eq!(h.dsts(), vec![call.addr("b"), call.addr("c")]);
        call.sim.control(|m| m.delete_endpoint("c1", "b")).unwrap();
        let h = call.send("a", &rtp(0xA1, 2, 30));
        assert_eq!(
            h.dsts(),
            vec![call.addr("c")],
            "b receives nothing after the delete"
        );
        let h = call.send("b", &rtp(0xB1, 1, 10));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
        // b's credentials no longer latch anything.
        let mut b = call.agent("b").clone();
        let from = call.addr("b");
        assert!(!call.sim.latch(&mut b, from));
        assert_eq!(call.sim.dropped(DropReason::StunUnknownUser), 1);
    });
}

#[test]
fn deleting_the_conference_stops_everyone() {
    with_shards(|mut call| {
        call.sim.control(|m| m.delete_conference("c1")).unwrap();
        for n in NAMES {
            let h = call.send(n, &rtp(0xA1, 1, 10));
            assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
        }
        let (eps, latched) = call.sim.router(0).table().counts();
        assert_eq!((eps, latched), (0, 0));
    });
}
