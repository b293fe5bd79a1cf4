//! Fixtures for the in-memory behaviour tests: a standard call on the simulated
//! forwarder, addresses, and RTP/RTCP packet builders.
#![allow(dead_code)]

use std::net::SocketAddr;

use blindfold_proto::model::{Subscription, Track, TrackKind};
use blindfold_proto::sim::{Agent, Handled, Sim, SimConfig};

/// Where participant `i` sends from (TEST-NET-2, port 5000 + i).
pub fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 1], 5000 + i))
}

/// Another host (TEST-NET-3), for a participant's second address or a stranger.
pub fn other(i: u16) -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 7], 7000 + i))
}

/// An RTP packet with `ssrc` and `seq`, whose payload encodes both.
pub fn rtp(ssrc: u32, seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// An SRTCP sender report from `ssrc` (encrypted remainder, E=1 trailer).
pub fn sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x42; 20]);
    p.extend_from_slice(&[0x80, 0, 0, 1]);
    p.extend_from_slice(&[0x17; 16]);
    p
}

/// One RTCP feedback packet (`pt` 205 RTPFB or 206 PSFB, format `fmt`) about `media`.
pub fn fb(pt: u8, fmt: u8, sender: u32, media: u32) -> Vec<u8> {
    let mut p = vec![0x80 | fmt, pt, 0, 3];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p.extend_from_slice(&[0, 7, 0, 0]);
    p
}

/// A receiver report from `sender` with one report block per SSRC in `about`.
pub fn rr(sender: u32, about: &[u32]) -> Vec<u8> {
    let words = 1 + 6 * about.len() as u16;
    let mut p = vec![0x80 | about.len() as u8, 201];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&sender.to_be_bytes());
    for s in about {
        p.extend_from_slice(&s.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
    }
    p
}

/// Appends an SRTCP trailer with E=0 (authenticated, readable) and a tag.
pub fn srtcp_e0(mut compound: Vec<u8>) -> Vec<u8> {
    compound.extend_from_slice(&[0x00, 0, 0, 2]);
    compound.extend_from_slice(&[0x23; 16]);
    compound
}

pub fn track(id: &str, kind: TrackKind, ssrcs: &[u32]) -> Track {
    Track {
        id: id.into(),
        kind,
        ssrcs: ssrcs.to_vec(),
    }
}

pub fn sub(endpoint: &str, track: &str) -> Subscription {
    Subscription {
        endpoint: endpoint.into(),
        track: track.into(),
    }
}

/// Conference "c1": "a" publishes "mic" (0xA1) and "cam" (0xA2); "b" and "c" subscribe
/// to both; "d" publishes "mic" (0xD1), to which "a" subscribes, and subscribes to
/// nothing. Participant `i` of a, b, c, d is latched by STUN at `addr(i)`.
pub struct Call {
    pub sim: Sim,
    pub agents: Vec<Agent>,
}

pub const NAMES: [&str; 4] = ["a", "b", "c", "d"];

impl Call {
    pub fn new(cfg: SimConfig) -> Self {
        let mut sim = Sim::new(cfg);
        let mut agents: Vec<Agent> = NAMES.iter().map(|n| sim.join("c1", n)).collect();
        sim.control(|m| {
            m.set_tracks(
                "c1",
                "a",
                vec![
                    track("mic", TrackKind::Audio, &[0xA1]),
                    track("cam", TrackKind::Video, &[0xA2]),
                ],
            )
        })
        .unwrap();
        sim.control(|m| m.set_tracks("c1", "d", vec![track("mic", TrackKind::Audio, &[0xD1])]))
            .unwrap();
        for s in ["b", "c"] {
            sim.control(|m| m.set_subscriptions("c1", s, vec![sub("a", "mic"), sub("a", "cam")]))
                .unwrap();
        }
        sim.control(|m| m.set_subscriptions("c1", "a", vec![sub("d", "mic")]))
            .unwrap();
        for (i, agent) in agents.iter_mut().enumerate() {
            assert!(sim.latch(agent, addr(i as u16)), "{} latches", NAMES[i]);
            assert_eq!(sim.endpoint_at(addr(i as u16)), Some(agent.ep));
        }
        Self { sim, agents }
    }

    /// Participant `name`'s address.
    pub fn addr(&self, name: &str) -> SocketAddr {
        addr(NAMES.iter().position(|n| *n == name).unwrap() as u16)
    }

    /// Participant `name`'s agent.
    pub fn agent(&mut self, name: &str) -> &mut Agent {
        &mut self.agents[NAMES.iter().position(|n| *n == name).unwrap()]
    }

    /// `name`'s agent sends a fresh nominating check from `from` and answers what follows
    /// (see `Sim::latch`). Agents are used in place: a clone would repeat transaction ids,
    /// which the forwarder answers as retransmissions and which refresh nothing.
    pub fn latch(&mut self, name: &str, from: SocketAddr) -> bool {
        let i = NAMES.iter().position(|n| *n == name).unwrap();
        self.sim.latch(&mut self.agents[i], from)
    }

    /// `name` sends `pkt` from its own address.
    pub fn send(&mut self, name: &str, pkt: &[u8]) -> Handled {
        let from = self.addr(name);
        self.sim.receive(from, pkt)
    }
}

/// Runs `f` on a standard call with one shard and with three.
pub fn with_shards(f: impl Fn(Call)) {
    for shards in [1, 3] {
        f(Call::new(SimConfig {
            shards,
            ..SimConfig::default()
        }));
    }
}
