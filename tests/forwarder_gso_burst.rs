//! A video burst sent with GSO reaches every subscriber byte-identical and in order, is
//! received coalesced (UDP GRO) and leaves as one segmented send per subscriber; with
//! `--gso false --gro false` the same burst takes the plain path and arrives the same.

mod common;
use common::burst::{forwarder_with, gso_available, send_burst};
use common::*;

fn burst(ssrc: u32) -> Vec<Vec<u8>> {
    // A frame of 8 packets: 7 full ones and a shorter tail, as a packetizer cuts it.
    (0..8u16)
        .map(|seq| rtp(ssrc, seq, if seq == 7 { 400 } else { 1000 }))
        .collect()
}

/// Sends the burst through a forwarder with GSO and GRO on or off; waits until the
/// counters show `(coalesced buffers, segmented sends)` = `want`, and fails if they
/// never do.
fn deliver_burst(gso_gro: bool, want: (u64, u64)) {
    let fwd = forwarder_with(|c| {
        c.gso = gso_gro;
        c.gro = gso_gro;
    });
    let call = Call::new(&fwd);
    let tx0 = call.api.counter("blindfold_tx_packets_total", "");
    let sent = burst(0xA2);
    send_burst(&call.peer("a").sock, fwd.media_addr(), &sent);
    let last = sent.last().unwrap().clone();
    for name in ["b", "c"] {
        let mut got = Vec::new();
        let (p, from) = call
            .peer(name)
            .recv_until(|p| p == last.as_slice(), &mut got)
            .expect("subscriber receives the burst");
        got.push(p);
        assert_eq!(from, fwd.media_addr());
        assert_eq!(got, sent, "{name}: byte-identical, in order, none missing");
    }
    // Counters are published at the end of the wake that sent the copies.
    assert!(
        wait_for(|| call.api.counter("blindfold_tx_packets_total", "") >= tx0 + 16),
        "16 copies counted"
    );
    let counts = || {
        (
            call.api.counter("blindfold_gro_buffers_total", ""),
            call.api.counter("blindfold_gso_sends_total", ""),
        )
    };
    wait_for(|| counts() == want);
    assert_eq!(counts(), want, "(coalesced buffers, segmented sends)");
    fwd.stop();
}

#[test]
fn a_burst_is_received_coalesced_and_sent_segmented_to_each_subscriber() {
    if !gso_available() {
        return;
    }
    // The burst arrives as one coalesced buffer and leaves as one segmented send to
    // each of the two subscribers.
    deliver_burst(true, (1, 2));
    // The plain path: no coalescing, no segmentation, the same copies.
    deliver_burst(false, (0, 0));
}
