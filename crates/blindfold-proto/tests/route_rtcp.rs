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

/// SRTCP cannot be split, so a compound that names several publishers goes whole to each
/// distinct one the sender subscribes to, once, and to nobody else.
#[test]
fn a_compound_naming_several_publishers_reaches_each_of_them_once() {
    with_shards(|mut call| {
        let (a, d) = (call.addr("a"), call.addr("d"));
        // b now receives a's two tracks and d's mic; c still receives only a's.
        call.sim
            .control(|m| {
                m.set_subscriptions(
                    "c1",
                    "b",
                    vec![sub("a", "mic"), sub("a", "cam"), sub("d", "mic")],
                )
            })
            .unwrap();
        for pkt in [
            // One RR with report blocks about a's and d's streams.
            srtcp_e0(rr(0xB0, &[0xA1, 0xD1])),
            // RR about a, then a NACK about d.
            srtcp_e0([rr(0xB0, &[0xA1]), fb(205, 1, 0xB0, 0xD1)].concat()),
            // a named three times (two SSRCs) and d once: a gets one copy.
            srtcp_e0(
                [
                    rr(0xB0, &[0xA1, 0xA2]),
                    fb(206, 1, 0xB0, 0xA2),
                    fb(206, 1, 0xB0, 0xD1),
                ]
                .concat(),
            ),
        ] {
            let h = call.send("b", &pkt);
            let mut dsts = h.dsts();
            dsts.sort();
            assert_eq!(dsts, vec![a, d], "each publisher once");
            assert!(h.sent.iter().all(|s| s.data == pkt), "the whole compound");
        }
        // c does not receive d: naming d gets d nothing, naming a still reaches a.
        let pkt = srtcp_e0([fb(206, 1, 0xC0, 0xD1), rr(0xC0, &[0xA1])].concat());
        let h = call.send("c", &pkt);
        assert_eq!(h.dsts(), vec![a]);
        // A publisher's own streams and strangers' SSRCs reach no one.
        let h = call.send("d", &srtcp_e0(rr(0xD0, &[0xD1, 0x9999])));
        assert!(h.sent.is_empty());
    });
}
