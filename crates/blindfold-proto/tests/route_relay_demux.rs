//! Relay demultiplexing: relay endpoints of several calls declare the same static address
//! (the peer forwarder's media address), so one pair of forwarders carries every call's
//! link. Packets from that address reach the call whose relay owns the SSRC (RTP, sender
//! reports) or subscribes to it (receiver feedback), each copy once, and never another
//! call; an SSRC two calls' relays claim at one address goes to neither; a participant
//! cannot take the shared address; a relay leaving gives the address back to the others.

mod common;
use std::net::SocketAddr;

use blindfold_proto::counters::DropReason;
use blindfold_proto::model::TrackKind;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::{Agent, Sim, SimConfig};
use blindfold_proto::table::SHARED;
use common::*;

/// The peer forwarder's media address: every relay here declares it.
const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)),
    10_000,
);

/// Call `conf` on this forwarder: member "m" (latched at `addr(i)`) publishes "mic"
/// (`local`), and relay "r" at `PEER` publishes the peer's member's "mic" (`remote`);
/// each subscribes to the other's.
fn call(sim: &mut Sim, conf: &str, i: u16, local: u32, remote: u32) -> Agent {
    let mut m = sim.join(conf, "m");
    sim.control(|md| md.create_endpoint(conf, Some("r".into())))
        .unwrap();
    sim.control(|md| md.set_address(conf, "r", PEER)).unwrap();
    sim.control(|md| md.set_tracks(conf, "m", vec![track("mic", TrackKind::Audio, &[local])]))
        .unwrap();
    sim.control(|md| {
        md.set_tracks(
            conf,
            "r",
            vec![track("peer-mic", TrackKind::Audio, &[remote])],
        )
    })
    .unwrap();
    sim.control(|md| md.set_subscriptions(conf, "m", vec![sub("r", "peer-mic")]))
        .unwrap();
    sim.control(|md| md.set_subscriptions(conf, "r", vec![sub("m", "mic")]))
        .unwrap();
    assert!(sim.latch(&mut m, addr(i)));
    m
}

fn shards(f: impl Fn(Sim)) {
    for shards in [1, 3] {
        f(Sim::new(SimConfig {
            shards,
            ..SimConfig::default()
        }));
    }
}

#[test]
fn each_calls_packets_from_the_shared_address_reach_that_call_only() {
    shards(|mut sim| {
        call(&mut sim, "x", 0, 0x11, 0x12);
        call(&mut sim, "y", 1, 0x21, 0x22);
        assert_eq!(sim.endpoint_at(PEER), Some(SHARED));
        for shard in 0..sim.shard_count() {
            assert_eq!(sim.router(shard).table().shared_addresses(), 1);
        }
        // The model agrees: declaring the address took it from neither relay.
        for conf in ["x", "y"] {
            let info = sim.model().conference(conf, sim.now()).unwrap();
            assert!(info.endpoints.iter().all(|e| e.latched), "{conf}");
        }
        for seq in 0..5 {
            // Media from the peer forwarder: to the member of the call whose relay owns it.
            let h = sim.receive(PEER, &rtp(0x12, seq, 80));
            assert_eq!(h.dsts(), vec![addr(0)], "x's media reaches x's member once");
            let h = sim.receive(PEER, &rtp(0x22, seq, 80));
            assert_eq!(h.dsts(), vec![addr(1)], "y's media reaches y's member once");
            // Members' media crosses the link once, through their own call's relay.
            assert_eq!(sim.receive(addr(0), &rtp(0x11, seq, 80)).dsts(), vec![PEER]);
            assert_eq!(sim.receive(addr(1), &rtp(0x21, seq, 80)).dsts(), vec![PEER]);
        }
        // Sender reports follow their SSRC's owner.
        assert_eq!(sim.receive(PEER, &sr(0x22)).dsts(), vec![addr(1)]);
        // Feedback crossing back reaches the publisher it names, in its own call.
        let pli = srtcp_e0(fb(206, 1, 0x99, 0x11));
        assert_eq!(sim.receive(PEER, &pli).dsts(), vec![addr(0)]);
        let report = srtcp_e0(rr(0x98, &[0x21]));
        assert_eq!(sim.receive(PEER, &report).dsts(), vec![addr(1)]);
        // Nobody at the shared address owns 0x33: dropped, nothing sent.
        let h = sim.receive(PEER, &rtp(0x33, 1, 80));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
        assert!(h.sent.is_empty());
        // Nor can feedback about a member's SSRC be aimed through a relay that does not
        // subscribe to it: 0x12 is the peer's own.
        let h = sim.receive(PEER, &srtcp_e0(fb(206, 1, 0x99, 0x12)));
        assert!(h.sent.is_empty());
        assert_eq!(sim.dropped(DropReason::UnknownSource), 2);
    });
}

#[test]
fn an_ssrc_two_calls_claim_at_one_address_reaches_neither() {
    shards(|mut sim| {
        call(&mut sim, "x", 0, 0x11, 0x12);
        call(&mut sim, "y", 1, 0x21, 0x22);
        // Call z's relay claims 0x12 too (its peer member chose the same random SSRC).
        call(&mut sim, "z", 2, 0x31, 0x12);
        let h = sim.receive(PEER, &rtp(0x12, 1, 80));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::UnknownSource));
        assert!(h.sent.is_empty(), "one call's packets never reach another");
        assert_eq!(sim.receive(PEER, &rtp(0x22, 1, 80)).dsts(), vec![addr(1)]);
        // z leaves: 0x12 is x's alone again.
        sim.control(|m| m.delete_conference("z")).unwrap();
        assert_eq!(sim.receive(PEER, &rtp(0x12, 2, 80)).dsts(), vec![addr(0)]);
    });
}

#[test]
fn a_relay_leaving_gives_the_address_to_the_others_and_the_last_frees_it() {
    shards(|mut sim| {
        call(&mut sim, "x", 0, 0x11, 0x12);
        call(&mut sim, "y", 1, 0x21, 0x22);
        sim.control(|m| m.delete_endpoint("y", "r")).unwrap();
        let x_relay = sim.endpoint_at(PEER).expect("x's relay holds the address");
        assert_ne!(x_relay, SHARED);
        for shard in 0..sim.shard_count() {
            assert_eq!(sim.router(shard).table().shared_addresses(), 0);
        }
        assert_eq!(sim.receive(PEER, &rtp(0x12, 1, 80)).dsts(), vec![addr(0)]);
        // y's SSRC now belongs to no endpoint at PEER's call (x): not owned.
        let h = sim.receive(PEER, &rtp(0x22, 1, 80));
        assert_eq!(h.outcome, Outcome::Dropped(DropReason::SsrcNotOwned));
        // y's member's media has no relay to cross any more.
        assert!(sim.receive(addr(1), &rtp(0x21, 1, 80)).sent.is_empty());
        // Both model views agree: x's relay is still latched (declared).
        let info = sim.model().conference("x", sim.now()).unwrap();
        assert!(info.endpoints.iter().all(|e| e.latched));
        sim.control(|m| m.delete_conference("x")).unwrap();
        assert_eq!(sim.endpoint_at(PEER), None);
    });
}

#[test]
fn new_tracks_and_subscriptions_of_a_sharing_relay_are_routed_at_once() {
    shards(|mut sim| {
        call(&mut sim, "x", 0, 0x11, 0x12);
        call(&mut sim, "y", 1, 0x21, 0x22);
        // The peer's member in y starts a camera: the relay publishes it.
        sim.control(|m| {
            m.set_tracks(
                "y",
                "r",
                vec![
                    track("peer-mic", TrackKind::Audio, &[0x22]),
                    track("peer-cam", TrackKind::Video, &[0x23]),
                ],
            )
        })
        .unwrap();
        sim.control(|m| {
            m.set_subscriptions("y", "m", vec![sub("r", "peer-mic"), sub("r", "peer-cam")])
        })
        .unwrap();
        assert_eq!(sim.receive(PEER, &rtp(0x23, 1, 80)).dsts(), vec![addr(1)]);
        // x's relay stops subscribing: feedback about x's member no longer crosses.
        sim.control(|m| m.set_subscriptions("x", "r", vec![]))
            .unwrap();
        assert!(sim.receive(addr(0), &rtp(0x11, 1, 80)).sent.is_empty());
        let h = sim.receive(PEER, &srtcp_e0(fb(206, 1, 0x99, 0x11)));
        assert!(h.sent.is_empty());
    });
}

#[test]
fn a_participant_cannot_latch_at_the_shared_address() {
    shards(|mut sim| {
        call(&mut sim, "x", 0, 0x11, 0x12);
        call(&mut sim, "y", 1, 0x21, 0x22);
        // A member of y proves PEER (it answers the forwarder's check from there) and
        // nominates it: never taken, the relays keep their address.
        let mut m = sim.join("y", "intruder");
        sim.latch(&mut m, PEER);
        assert_eq!(sim.endpoint_at(PEER), Some(SHARED));
        assert!(sim.dropped(DropReason::StunAddressInUse) >= 1);
        assert_eq!(sim.receive(PEER, &rtp(0x12, 1, 80)).dsts(), vec![addr(0)]);
        assert_eq!(sim.receive(PEER, &rtp(0x22, 1, 80)).dsts(), vec![addr(1)]);
    });
}
