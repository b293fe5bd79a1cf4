//! A datagram from an address that is not latched to an endpoint is dropped and counted:
//! the forwarder cannot be used as a reflector by an outsider.

mod common;
use common::*;

#[test]
fn unlatched_source_is_dropped_and_counted() {
    with_shard_counts(|fwd| {
        let call = Call::new(fwd);
        let outsider = Peer::new(fwd.media_addr());
        // The outsider claims a's SSRC from an unlatched address.
        for seq in 0..10 {
            outsider.send(&rtp(0xA1, seq, 100));
        }
        // Junk outside the RFC 7983 ranges is dropped too.
        outsider.send(&[0x16, 0xfe, 0xfd, 0, 0]);
        assert!(
            wait_for(|| call.api.counter(
                "blindfold_dropped_packets_total",
                "reason=\"unknown_source\""
            ) >= 10),
            "unknown-source drops counted"
        );
        assert!(wait_for(|| call.api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"unclassified\""
        ) >= 1));
        // Barrier: a real packet from a reaches b after the outsider's were handled.
        let marker = rtp(0xA1, 999, 10);
        call.peer("a").send(&marker);
        let mut before = Vec::new();
        call.peer("b")
            .recv_until(|p| p == marker.as_slice(), &mut before)
            .expect("b receives a's packet");
        assert!(before.is_empty(), "the outsider's packets were forwarded");
        assert!(
            outsider.drain().is_empty(),
            "the outsider got something back"
        );
    });
}
