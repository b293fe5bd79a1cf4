//! SSRC ownership: an endpoint may only send the SSRCs its tracks declare; another
//! endpoint's SSRC, or an undeclared one, is dropped and counted `ssrc_not_owned`.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use common::*;

#[test]
fn an_endpoint_cannot_send_an_ssrc_it_does_not_own() {
    with_shards(|mut call| {
        // d claims a's SSRC.
        let h = call.send("d", &rtp(0xA1, 1, 20));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::SsrcNotOwned));
        assert!(h.sent.is_empty());
        // b sends an SSRC nobody declared.
        let h = call.send("b", &rtp(0xBEEF, 1, 20));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::SsrcNotOwned));
        assert_eq!(call.sim.dropped(DropReason::SsrcNotOwned), 2);
        // A sender report under a's SSRC from d is refused the same way.
        let h = call.send("d", &sr(0xA2));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::SsrcNotOwned));
    });
}
