//! RTCP routing: a publisher's sender report reaches its subscribers; a subscriber's
//! feedback (PLI, NACK) reaches the publisher of the media SSRC it names.

mod common;
use common::*;

fn sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x42; 20]);
    p.extend_from_slice(&[0x80, 0, 0, 1]); // SRTCP E flag and index
    p.extend_from_slice(&[0x17; 16]); // tag
    p
}

fn feedback(pt: u8, fmt: u8, sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x80 | fmt, pt, 0, 3];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p.extend_from_slice(&[0, 7, 0, 0]);
    p.extend_from_slice(&[0x00, 0, 0, 2]); // E=0 (authenticated only) and index
    p.extend_from_slice(&[0x23; 16]);
    p
}

#[test]
fn rtcp_goes_to_subscribers_and_feedback_to_the_publisher() {
    with_shard_counts(|fwd| {
        let call = Call::new(fwd);
        let report = sr(0xA2);
        call.peer("a").send(&report);
        for s in ["b", "c"] {
            let mut other = Vec::new();
            let (_, from) = call
                .peer(s)
                .recv_until(|p| p == report.as_slice(), &mut other)
                .expect("subscriber gets the SR");
            assert_eq!(from, fwd.media_addr());
        }
        let pli = feedback(206, 1, 0xB0, 0xA2);
        let nack = feedback(205, 1, 0xC0, 0xA1);
        call.peer("b").send(&pli);
        call.peer("c").send(&nack);
        let mut other = Vec::new();
        call.peer("a")
            .recv_until(|p| p == pli.as_slice(), &mut other)
            .expect("PLI reaches a");
        let mut other2 = Vec::new();
        if !other.contains(&nack) {
            call.peer("a")
                .recv_until(|p| p == nack.as_slice(), &mut other2)
                .expect("NACK reaches a");
        }
        // d does not subscribe to a: its PLI is refused and counted.
        call.peer("d").send(&feedback(206, 1, 0xD0, 0xA2));
        assert!(wait_for(|| call.api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"rtcp_no_target\""
        ) >= 1));
        assert!(call.api.counter("blindfold_rtcp_forwarded_total", "") >= 3);
    });
}
