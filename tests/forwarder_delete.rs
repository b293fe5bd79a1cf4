//! Deleting an endpoint through the control API stops its traffic at once, both ways.

mod common;
use common::*;

#[test]
fn deleted_endpoint_stops_receiving_and_sending_at_once() {
    with_shard_counts(|fwd| {
        let call = Call::new(fwd);
        let (a, b, c) = (call.peer("a"), call.peer("b"), call.peer("c"));
        let first = rtp(0xA1, 1, 30);
        a.send(&first);
        let mut o = Vec::new();
        b.recv_until(|p| p == first.as_slice(), &mut o)
            .expect("b receives before delete");
        call.api.delete_endpoint("c1", "b");
        // The DELETE answered 204: from here on b must get nothing.
        for seq in 2..50 {
            a.send(&rtp(0xA1, seq, 30));
        }
        let last = rtp(0xA1, 50, 30);
        a.send(&last);
        let mut o = Vec::new();
        c.recv_until(|p| p == last.as_slice(), &mut o)
            .expect("c still receives");
        let leaked: Vec<_> = b
            .drain()
            .into_iter()
            .filter(|p| rtp_id(p).is_some())
            .collect();
        assert!(
            leaked.is_empty(),
            "b received {} packets after its deletion",
            leaked.len()
        );
        // b can no longer send either: a, subscribed to nothing of b's, is not the
        // point; b's packets now come from an unknown source.
        let before = call.api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"unknown_source\"",
        );
        b.send(&rtp(0xB1, 1, 10));
        assert!(wait_for(|| call.api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"unknown_source\""
        ) > before));
    });
}
