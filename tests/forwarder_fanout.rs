//! A publisher's RTP reaches every subscriber byte-identical and from the forwarder's
//! media address; an unsubscribed endpoint gets nothing and the sender gets no echo.

mod common;
use common::*;

#[test]
fn rtp_reaches_subscribers_byte_identical_and_nobody_else() {
    with_shard_counts(|fwd| {
        let call = Call::new(fwd);
        let (a, b, c, d) = (
            call.peer("a"),
            call.peer("b"),
            call.peer("c"),
            call.peer("d"),
        );
        let sent: Vec<Vec<u8>> = (0..20u16).map(|seq| rtp(0xA1, seq, 160)).collect();
        for p in &sent {
            a.send(p);
        }
        // The last packet is the barrier: once it arrives, everything before it was
        // routed, so what has not arrived at the others was never sent to them.
        let last = sent.last().unwrap().clone();
        for sub in [b, c] {
            let mut got = Vec::new();
            let (p, from) = sub
                .recv_until(|p| p == last.as_slice(), &mut got)
                .expect("subscriber receives the publisher's packets");
            assert_eq!(
                from,
                fwd.media_addr(),
                "copies come from the forwarder's address"
            );
            got.push(p);
            assert_eq!(got, sent, "byte-identical, in order, none missing");
        }
        // d publishes to a so that a's socket has a barrier too.
        let marker = rtp(0xD1, 1, 40);
        d.send(&marker);
        let mut before = Vec::new();
        a.recv_until(|p| p == marker.as_slice(), &mut before)
            .expect("a receives d's packet");
        assert!(
            before.is_empty(),
            "the sender got an echo: {} packets",
            before.len()
        );
        assert!(
            d.drain()
                .iter()
                .all(|p| rtp_id(p).map(|(s, _)| s) != Some(0xA1)),
            "an unsubscribed endpoint received media"
        );
        let out = call.api.counter("blindfold_rtp_forwarded_total", "");
        assert!(out >= 21, "forwarded counter {out}");
    });
}
