//! Unknown sources: a datagram from an address no endpoint is latched at is dropped after
//! one lookup and counted; nothing is sent back, so the forwarder is no reflector.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use common::*;

#[test]
fn a_stranger_gets_nothing_forwarded_and_nothing_back() {
    with_shards(|mut call| {
        let stranger = other(1);
        for seq in 0..10 {
            let h = call.sim.receive(stranger, &rtp(0xA1, seq, 100));
            assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
            assert!(h.sent.is_empty());
        }
        let h = call.sim.receive(stranger, &[0x16, 0xfe, 0xfd, 0, 0]);
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::Unclassified));
        let h = call.sim.receive(stranger, &srtcp_e0(fb(206, 1, 1, 0xA1)));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
        assert_eq!(call.sim.dropped(DropReason::UnknownSource), 11);
        assert_eq!(call.sim.dropped(DropReason::Unclassified), 1);
    });
}
