//! Bursts sent as one segmented send (UDP GSO), the way a video sender with GSO hands a
//! frame to the kernel: on loopback a forwarder socket with UDP GRO on receives it as
//! one coalesced buffer, which is what the GSO/GRO tests need to exercise.

use std::net::{SocketAddr, UdpSocket};

use blindfold::forwarder::Forwarder;
use blindfold::forwarder::config::ServeArgs;
use blindfold::udp::{SendBatch, Transmit};

/// Whether this kernel segments sends (UDP_SEGMENT); tests that need it skip otherwise.
pub fn gso_available() -> bool {
    let ok = blindfold::udp::gso_supported("127.0.0.1:0".parse().unwrap());
    if !ok {
        eprintln!("note: kernel without UDP_SEGMENT; skipping");
    }
    ok
}

/// Sends `pkts` (all of one size but the last, which may be shorter) from `sock` to `to`
/// as one segmented send.
pub fn send_burst(sock: &UdpSocket, to: SocketAddr, pkts: &[Vec<u8>]) {
    let seg = pkts[0].len();
    assert!(
        pkts.iter().rev().skip(1).all(|p| p.len() == seg) && pkts.last().unwrap().len() <= seg,
        "a segmented send needs equal sizes (the last may be shorter)"
    );
    let t = Transmit {
        dst: to,
        src_ip: None,
        segment_size: Some(seg as u16),
        parts: pkts.iter().map(|p| &p[..]),
    };
    let sent = SendBatch::new(1).send(sock, [t]).expect("segmented send");
    assert_eq!(sent, 1);
}

/// A forwarder on 127.0.0.1 with one shard and `edit` applied to its defaults.
pub fn forwarder_with(edit: impl FnOnce(&mut ServeArgs)) -> Forwarder {
    let mut cfg = ServeArgs {
        media: "127.0.0.1:0".parse().unwrap(),
        control: "127.0.0.1:0".parse().unwrap(),
        shards: Some(1),
        pin: false,
        socket_buffer: 1 << 20,
        control_token: Some(super::TOKEN.into()),
        ..Default::default()
    };
    edit(&mut cfg);
    Forwarder::start(cfg).expect("forwarder starts")
}
