//! Every rule holds per datagram inside a coalesced (UDP GRO) buffer: a burst mixing
//! streams is split to each stream's own subscribers, a foreign SSRC inside it is
//! dropped alone, ingress limits count each datagram, receiver feedback is routed packet
//! by packet, and a burst from an unlatched source is dropped whole. Nothing is
//! forwarded blindly because the kernel glued it together.

mod common;
use common::burst::{forwarder_with, gso_available, send_burst};
use common::*;

use std::net::UdpSocket;

use blindfold::control::TrackKind;
use blindfold::forwarder::Forwarder;

/// Conference "g": "a" publishes mic (0xA1) and cam (0xA2); "b" subscribes to a's mic
/// only, "c" to a's cam only; "d" publishes mic (0xD1) to nobody. All latched.
struct Split {
    api: Api,
    peers: Vec<Peer>,
}

impl Split {
    fn new(fwd: &Forwarder) -> Self {
        let api = Api::new(fwd.control_addr());
        api.conference("g");
        let creds: Vec<Creds> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| api.endpoint("g", n))
            .collect();
        api.tracks(
            "g",
            "a",
            vec![
                track("mic", TrackKind::Audio, &[0xA1]),
                track("cam", TrackKind::Video, &[0xA2]),
            ],
        );
        api.tracks("g", "d", vec![track("mic", TrackKind::Audio, &[0xD1])]);
        api.subscribe("g", "b", &[("a", "mic")]);
        api.subscribe("g", "c", &[("a", "cam")]);
        let peers: Vec<Peer> = creds.iter().map(|_| Peer::new(fwd.media_addr())).collect();
        for (p, c) in peers.iter().zip(&creds) {
            p.latch(c);
        }
        assert!(wait_for(|| api.get("g").all_latched(4)), "all latched");
        Self { api, peers }
    }

    fn peer(&self, name: &str) -> &Peer {
        &self.peers[["a", "b", "c", "d"]
            .iter()
            .position(|n| *n == name)
            .unwrap()]
    }

    fn drops(&self, reason: &str) -> u64 {
        self.api.counter(
            "blindfold_dropped_packets_total",
            &format!("reason=\"{reason}\""),
        )
    }

    /// Waits until the forwarder has received (and counted) at least `n` datagrams, and
    /// checks that they came in coalesced buffers.
    fn wait_rx(&self, n: u64) {
        assert!(
            wait_for(|| self.api.counter("blindfold_rx_packets_total", "") >= n),
            "forwarder received {n} datagrams"
        );
        assert!(
            wait_for(|| self.api.counter("blindfold_gro_buffers_total", "") >= 1),
            "the burst was coalesced (UDP GRO)"
        );
    }
}

fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x81, 206, 0, 2];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p
}

/// Receives until `last` arrives; returns everything received, `last` included.
fn until(peer: &Peer, last: &[u8]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let (p, _) = peer
        .recv_until(|p| p == last, &mut got)
        .expect("the burst's last datagram for this peer arrives");
    got.push(p);
    got
}

#[test]
fn a_coalesced_burst_is_split_by_stream_and_a_foreign_ssrc_is_dropped_alone() {
    if !gso_available() {
        return;
    }
    let fwd = forwarder_with(|_| {});
    let call = Split::new(&fwd);
    let rx0 = call.api.counter("blindfold_rx_packets_total", "");
    // One segmented send from a: its two streams interleaved, and d's SSRC in the middle.
    let burst = vec![
        rtp(0xA1, 1, 300),
        rtp(0xA2, 1, 300),
        rtp(0xA1, 2, 300),
        rtp(0xD1, 1, 300),
        rtp(0xA2, 2, 300),
        rtp(0xA1, 3, 300),
    ];
    send_burst(&call.peer("a").sock, fwd.media_addr(), &burst);
    call.wait_rx(rx0 + 6);
    assert_eq!(
        until(call.peer("b"), &burst[5]),
        vec![burst[0].clone(), burst[2].clone(), burst[5].clone()],
        "b gets a's mic and nothing else"
    );
    assert_eq!(
        until(call.peer("c"), &burst[4]),
        vec![burst[1].clone(), burst[4].clone()],
        "c gets a's cam and nothing else"
    );
    assert!(wait_for(|| call.drops("ssrc_not_owned") == 1));
    assert!(call.peer("d").drain().is_empty(), "no echo, nothing to d");
    fwd.stop();
}

#[test]
fn ingress_limits_count_every_datagram_of_a_coalesced_buffer() {
    if !gso_available() {
        return;
    }
    // A bucket of 5 packets (5/s with a one-second burst), no byte limit.
    let fwd = forwarder_with(|c| {
        c.ingress_pps = 5;
        c.ingress_bps = 0;
        c.ingress_burst_ms = 1000;
    });
    let call = Split::new(&fwd);
    let rx0 = call.api.counter("blindfold_rx_packets_total", "");
    let burst: Vec<Vec<u8>> = (0..12).map(|seq| rtp(0xA1, seq, 200)).collect();
    send_burst(&call.peer("a").sock, fwd.media_addr(), &burst);
    call.wait_rx(rx0 + 12);
    assert!(
        wait_for(|| call.drops("rate_limited") == 7),
        "7 of 12 over the limit"
    );
    assert_eq!(until(call.peer("b"), &burst[4]), burst[..5].to_vec());
    assert!(call.peer("b").drain().is_empty(), "nothing past the limit");
    fwd.stop();
}

#[test]
fn feedback_in_a_coalesced_buffer_is_routed_packet_by_packet() {
    if !gso_available() {
        return;
    }
    let fwd = forwarder_with(|_| {});
    let call = Split::new(&fwd);
    let rx0 = call.api.counter("blindfold_rx_packets_total", "");
    // b receives a's mic, not a's cam: its PLIs for the mic reach a, the cam one is
    // refused.
    let plis = vec![pli(0xB0, 0xA1), pli(0xB0, 0xA2), pli(0xB1, 0xA1)];
    send_burst(&call.peer("b").sock, fwd.media_addr(), &plis);
    call.wait_rx(rx0 + 3);
    assert_eq!(
        until(call.peer("a"), &plis[2]),
        vec![plis[0].clone(), plis[2].clone()]
    );
    assert!(wait_for(|| call.drops("rtcp_no_target") == 1));
    fwd.stop();
}

#[test]
fn a_coalesced_burst_from_an_unlatched_source_is_dropped_whole() {
    if !gso_available() {
        return;
    }
    let fwd = forwarder_with(|_| {});
    let call = Split::new(&fwd);
    let rx0 = call.api.counter("blindfold_rx_packets_total", "");
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    // It even uses a's SSRC: without a latch, nothing it sends is anyone's.
    let burst: Vec<Vec<u8>> = (0..6).map(|seq| rtp(0xA1, seq, 500)).collect();
    send_burst(&stranger, fwd.media_addr(), &burst);
    call.wait_rx(rx0 + 6);
    assert!(wait_for(|| call.drops("unknown_source") == 6));
    // a's next packet is the barrier: b receives it and nothing before it.
    let marker = rtp(0xA1, 100, 40);
    call.peer("a").send(&marker);
    assert_eq!(until(call.peer("b"), &marker), vec![marker]);
    fwd.stop();
}
