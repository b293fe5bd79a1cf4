//! RTCP routing: a publisher's sender report reaches its subscribers; a subscriber's
//! feedback (PLI, NACK, RR) reaches the publisher of the media SSRC it names; feedback
//! about a stream the sender does not receive is refused (`rtcp_no_target`).

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use common::*;

#[test]
fn sender_reports_go_to_subscribers_and_feedback_to_the_publisher() {
    with_shards(|mut call| {
        let report = sr(0xA2);
        let h = call.send("a", &report);
        assert_eq!(h.dsts(), vec![call.addr("b"), call.addr("c")]);
        assert!(h.sent.iter().all(|s| s.data == report));

        let a = call.addr("a");
        for (from, pkt) in [
            ("b", srtcp_e0(fb(206, 1, 0xB0, 0xA2))),
            ("c", srtcp_e0(fb(205, 1, 0xC0, 0xA1))),
            ("b", srtcp_e0(rr(0xB0, &[0xA1]))),
        ] {
            let h = call.send(from, &pkt);
            assert_eq!(h.outcome, Outcome::Forwarded(1), "{from}");
            assert_eq!(h.dsts(), vec![a]);
        }
        assert_eq!(call.sim.counters().rtcp_forwarded, 4);
    });
}

#[test]
fn feedback_about_a_stream_one_does_not_receive_is_refused() {
    with_shards(|mut call| {
        // d subscribes to nothing of a's: its PLI is no one's business.
        let h = call.send("d", &srtcp_e0(fb(206, 1, 0xD0, 0xA2)));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::RtcpNoTarget));
        assert!(h.sent.is_empty());
        // Feedback naming no media, or an SSRC of no one.
        let h = call.send("b", &srtcp_e0(rr(0xB0, &[])));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::RtcpNoTarget));
        let h = call.send("b", &srtcp_e0(fb(206, 1, 0xB0, 0x9999)));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::RtcpNoTarget));
        assert_eq!(call.sim.dropped(DropReason::RtcpNoTarget), 3);
    });
}
