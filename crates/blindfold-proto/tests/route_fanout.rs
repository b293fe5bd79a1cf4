//! Fan-out: a publisher's RTP goes, byte-identical, to every subscriber of its SSRC and to
//! nobody else, on every shard count.

mod common;
use blindfold_proto::route::Outcome;
use common::*;

#[test]
fn rtp_reaches_every_subscriber_byte_identical_and_nobody_else() {
    with_shards(|mut call| {
        for seq in 0..20u16 {
            for ssrc in [0xA1, 0xA2] {
                let p = rtp(ssrc, seq, 160);
                let h = call.send("a", &p);
                assert_eq!(h.outcome, Outcome::Forwarded(2));
                assert_eq!(h.dsts(), vec![call.addr("b"), call.addr("c")]);
                assert!(
                    h.sent.iter().all(|s| s.data == p),
                    "copies are byte-identical"
                );
            }
        }
        let p = rtp(0xD1, 1, 40);
        let h = call.send("d", &p);
        assert_eq!(h.dsts(), vec![call.addr("a")], "only a subscribes to d");
        assert_eq!(call.sim.counters().rtp_forwarded, 41);
    });
}

#[test]
fn a_publisher_without_subscribers_sends_nothing_and_counts_nothing_forwarded() {
    with_shards(|mut call| {
        call.sim
            .control(|m| m.set_subscriptions("c1", "a", vec![]))
            .unwrap();
        let h = call.send("d", &rtp(0xD1, 1, 40));
        assert!(h.sent.is_empty());
        // `rtp_forwarded` counts packets that produced at least one copy.
        assert_eq!(call.sim.counters().rtp_forwarded, 0);
        // Nor does an SR that reaches no one count as forwarded RTCP.
        let h = call.send("d", &sr(0xD1));
        assert!(h.sent.is_empty());
        assert_eq!(call.sim.counters().rtcp_forwarded, 0);
    });
}
