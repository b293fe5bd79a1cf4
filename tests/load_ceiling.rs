//! The ceiling (both loops) forwards correctly on loopback: every other member of the sender's group
//! gets a byte-identical copy from the ceiling's address, the sender gets no echo and
//! another group gets nothing; and a generator run against it is lossless.

use std::net::UdpSocket;
use std::time::Duration;

use blindfold::load::ceiling::{Ceiling, CeilingArgs, CeilingLoop, join_datagram};
use blindfold::load::topology::{Subscribe, Topology};
use blindfold::load::{RunArgs, Target, TargetArgs};

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..200u8).map(|i| i.wrapping_mul(7)));
    p
}

#[test]
fn ceiling_fans_out_within_the_group_only() {
    for mode in [CeilingLoop::Minimal, CeilingLoop::Poll] {
        fans_out_within_the_group_only(mode);
    }
}

fn fans_out_within_the_group_only(mode: CeilingLoop) {
    let c = Ceiling::start(&CeilingArgs {
        media: "127.0.0.1:0".parse().unwrap(),
        batch: 32,
        socket_buffer: 1 << 20,
        core: None,
        mode,
    })
    .unwrap();
    let media = c.media_addr();
    // Two groups of three: participants 0-2 and 3-5.
    let socks: Vec<UdpSocket> = (0..6)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut buf = [0u8; 2048];
    for (p, s) in socks.iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let join = join_datagram(p as u32, 3);
        s.send_to(&join, media).unwrap();
        let (n, from) = s.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&join[..], media),
            "{mode:?}: join acknowledged"
        );
    }
    let pkt = rtp(Topology::ssrc(1, 0), 42);
    socks[1].send_to(&pkt, media).unwrap();
    for p in [0, 2] {
        let (n, from) = socks[p].recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &pkt[..], "byte-identical copy");
        assert_eq!(from, media, "copies come from the ceiling's address");
    }
    for p in [1, 3, 4, 5] {
        socks[p]
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            socks[p].recv_from(&mut buf).is_err(),
            "participant {p} got a copy"
        );
    }
    c.stop();
}

#[test]
fn generator_against_the_ceiling_is_lossless() {
    let target = Target::open(&TargetArgs {
        spawn: true,
        ceiling: true,
        ceiling_loop: CeilingLoop::Minimal,
        control: String::new(),
        token: None,
        media: "127.0.0.1:0".parse().unwrap(),
        pid: None,
        shards: 1,
        batch: 32,
        pin: false,
        unlimited_ingress: false,
        offload: true,
        redis: None,
        layout: blindfold::load::cluster::Layout::Spread,
    })
    .unwrap();
    let topo = Topology::new(2, 4, None, vec!["audio".parse().unwrap()], Subscribe::All).unwrap();
    let args = RunArgs {
        duration: 1.0,
        warmup: 0.3,
        drain_ms: 200,
        rx_threads: 1,
        socket_buffer: 1 << 20,
        churn: 0,
        seed: 3,
        encrypt: false,
        gso: false,
        gro: false,
        quiet: true,
    };
    let r = blindfold::load::run(&target, &topo, &args).unwrap();
    target.close();
    assert!(r.expected_copies > 300, "{r}");
    assert_eq!(r.lost_copies, 0, "{r}");
    assert_eq!(r.misrouted, 0, "{r}");
    assert!(
        r.target_cpu.is_some(),
        "ceiling thread CPU is read from /proc"
    );
}
