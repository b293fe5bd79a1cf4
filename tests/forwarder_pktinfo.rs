//! A forwarder bound to the wildcard address answers from the address each participant
//! sent to, and sends copies from it (IP_PKTINFO): 127.0.0.1 and 127.0.0.2 both reach
//! `lo`, and without packet info the kernel would pick 127.0.0.1 for every reply, which a
//! participant's NAT or ICE agent talking to 127.0.0.2 would drop.
//!
//! The wildcard bind is the point of the test, so the media socket listens on every
//! interface for the few hundred milliseconds the test runs, on a random port.

mod common;
use common::*;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use blindfold::forwarder::Forwarder;
use blindfold::forwarder::config::ServeArgs;
use blindfold::proto::stun as ice;

fn wildcard_forwarder(shards: usize, advertise: &str) -> Forwarder {
    let cfg = ServeArgs {
        media: "0.0.0.0:0".parse().unwrap(),
        advertise: Some(advertise.parse().unwrap()),
        control: "127.0.0.1:0".parse().unwrap(),
        shards: Some(shards),
        pin: false,
        socket_buffer: 1 << 20,
        control_token: Some(TOKEN.into()),
        ..Default::default()
    };
    Forwarder::start(cfg).expect("forwarder starts")
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// Sends Binding requests to `to` until a verified answer arrives; returns the address
/// the answer came from.
fn stun_answer_source(sock: &UdpSocket, to: SocketAddr, creds: &Creds) -> SocketAddr {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 1500];
    for n in 1u8.. {
        assert!(Instant::now() < deadline, "no STUN answer from {to}");
        let txid = [n; 12];
        let req = ice::binding_request(txid, &creds.ufrag, "client", creds.pwd.as_bytes());
        sock.send_to(&req, to).unwrap();
        // The forwarder's own return-path check to this new address comes first.
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            if ice::parse_binding_success(&buf[..len], &txid, creds.pwd.as_bytes()).is_ok() {
                return from;
            }
        }
    }
    unreachable!()
}

#[test]
fn stun_answers_come_from_the_address_each_participant_sent_to() {
    for shards in [1, 2] {
        let fwd = wildcard_forwarder(shards, "127.0.0.2");
        let port = fwd.media_addr().port();
        let api = Api::new(fwd.control_addr());
        api.conference("c1");
        for (ep, local) in [("x", "127.0.0.2"), ("y", "127.0.0.1"), ("z", "127.0.0.2")] {
            let creds = api.endpoint("c1", ep);
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = at(local, port);
            assert_eq!(
                stun_answer_source(&sock, to, &creds),
                to,
                "{shards} shard(s): the answer to a check sent to {to} came from elsewhere"
            );
        }
        fwd.stop();
    }
}

#[test]
fn copies_come_from_the_address_the_participants_talk_to() {
    for shards in [1, 2] {
        let fwd = wildcard_forwarder(shards, "127.0.0.2");
        let media = at("127.0.0.2", fwd.media_addr().port());
        let call = Call::on(media, fwd.control_addr());
        let (a, b, c) = (call.peer("a"), call.peer("b"), call.peer("c"));
        let pkt = rtp(0xA1, 7, 160);
        a.send(&pkt);
        for sub in [b, c] {
            let (_, from) = sub
                .recv_until(|p| p == pkt.as_slice(), &mut Vec::new())
                .expect("subscriber receives the copy");
            assert_eq!(
                from, media,
                "{shards} shard(s): the copy came from another address than the one the call uses"
            );
        }
        fwd.stop();
    }
}
