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
    Track::new(id, kind, ssrcs)
}

pub fn sub(endpoint: &str, track: &str) -> Subscription {
    Subscription::new(endpoint, track)
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

/// Extension ids the selective-forwarding tests declare (per call: any would do).
pub const AUDIO_LEVEL_ID: u8 = 1;
pub const FRAME_MARKING_ID: u8 = 3;

/// An RTP packet carrying the one-byte-form extension elements `ext` (id, octet).
pub fn rtp_ext(ssrc: u32, seq: u16, ext: &[(u8, u8)], payload: usize) -> Vec<u8> {
    let mut p = rtp(ssrc, seq, payload);
    let data: Vec<[u8; 1]> = ext.iter().map(|&(_, b)| [b]).collect();
    let elements: Vec<(u8, &[u8])> = ext
        .iter()
        .zip(&data)
        .map(|(&(id, _), d)| (id, &d[..]))
        .collect();
    let mut block = Vec::new();
    blindfold_proto::ext::write_block(&mut block, &elements).unwrap();
    blindfold_proto::ext::insert_block(&mut p, &block).unwrap();
    p
}

/// An audio packet at `dbov` (RFC 6464: 0 loudest, 127 silence).
pub fn audio(ssrc: u32, seq: u16, dbov: u8) -> Vec<u8> {
    let level = blindfold_proto::ext::AudioLevel {
        dbov,
        voice: dbov < 60,
    };
    rtp_ext(ssrc, seq, &[(AUDIO_LEVEL_ID, level.to_byte())], 60)
}

/// A video packet with frame marking.
pub fn video(ssrc: u32, seq: u16, start: bool, end: bool, key: bool) -> Vec<u8> {
    let fm = blindfold_proto::ext::FrameMarking {
        start,
        end,
        independent: key,
        ..Default::default()
    };
    rtp_ext(ssrc, seq, &[(FRAME_MARKING_ID, fm.to_byte())], 200)
}

/// A simulcast video track: one SSRC per layer, its own sequence numbers.
pub struct Layers {
    pub ssrcs: Vec<u32>,
    seq: Vec<u16>,
}

impl Layers {
    pub fn new(ssrcs: &[u32]) -> Self {
        Self {
            ssrcs: ssrcs.to_vec(),
            seq: vec![0; ssrcs.len()],
        }
    }

    /// The packets of one frame of `layer`: `packets` of them, the first S, the last E.
    pub fn frame(&mut self, layer: usize, key: bool, packets: usize) -> Vec<Vec<u8>> {
        (0..packets)
            .map(|i| {
                let seq = self.seq[layer];
                self.seq[layer] = seq.wrapping_add(1);
                video(self.ssrcs[layer], seq, i == 0, i + 1 == packets, key)
            })
            .collect()
    }
}

/// A selective track: simulcast layers with frame marking.
pub fn simulcast(id: &str, ssrcs: &[u32]) -> Track {
    let mut t = Track::new(id, TrackKind::Video, ssrcs);
    t.ext.frame_marking = Some(FRAME_MARKING_ID);
    t.simulcast = ssrcs.len() > 1;
    t
}

/// An audio track whose levels the forwarder reads.
pub fn mic(id: &str, ssrc: u32) -> Track {
    let mut t = Track::new(id, TrackKind::Audio, [ssrc]);
    t.ext.audio_level = Some(AUDIO_LEVEL_ID);
    t
}

/// Conference "s1" of `n` participants `p0..`, participant `i` publishing "mic"
/// (SSRC `0x100 + i`, audio levels) and "cam" (simulcast `0x200 + 16 i + layer`, three
/// layers, frame marking), everyone subscribed to everyone, latched at `addr(i)`.
pub struct Room {
    pub sim: Sim,
    pub agents: Vec<Agent>,
    pub cams: Vec<Layers>,
    pub audio_seq: Vec<u16>,
}

pub fn mic_ssrc(i: usize) -> u32 {
    0x100 + i as u32
}

pub fn cam_ssrcs(i: usize) -> [u32; 3] {
    let b = 0x200 + 16 * i as u32;
    [b, b + 1, b + 2]
}

impl Room {
    pub fn new(n: usize, shards: usize) -> Self {
        let mut sim = Sim::new(SimConfig {
            shards,
            ..SimConfig::default()
        });
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let mut agents: Vec<Agent> = names.iter().map(|id| sim.join("s1", id)).collect();
        for (i, id) in names.iter().enumerate() {
            sim.control(|m| {
                m.set_tracks(
                    "s1",
                    id,
                    vec![mic("mic", mic_ssrc(i)), simulcast("cam", &cam_ssrcs(i))],
                )
            })
            .unwrap();
        }
        for id in &names {
            let subs = names
                .iter()
                .filter(|o| *o != id)
                .flat_map(|o| [sub(o, "mic"), sub(o, "cam")])
                .collect();
            sim.control(|m| m.set_subscriptions("s1", id, subs))
                .unwrap();
        }
        for (i, agent) in agents.iter_mut().enumerate() {
            assert!(sim.latch(agent, addr(i as u16)));
        }
        Self {
            sim,
            cams: (0..n).map(|i| Layers::new(&cam_ssrcs(i))).collect(),
            audio_seq: vec![0; n],
            agents,
        }
    }

    pub fn name(i: usize) -> String {
        format!("p{i}")
    }

    /// Participant `i` sends one audio packet at `dbov`.
    pub fn speak(&mut self, i: usize, dbov: u8) -> Handled {
        let seq = self.audio_seq[i];
        self.audio_seq[i] = seq.wrapping_add(1);
        self.sim
            .receive(addr(i as u16), &audio(mic_ssrc(i), seq, dbov))
    }

    /// Participant `i` sends one frame of `layer`; returns who got its packets.
    pub fn frame(&mut self, i: usize, layer: usize, key: bool, packets: usize) -> Vec<Handled> {
        let pkts = self.cams[i].frame(layer, key, packets);
        pkts.iter()
            .map(|p| self.sim.receive(addr(i as u16), p))
            .collect()
    }
}

/// What one 20 ms step of a conversation delivered: for each (publisher, "mic" or
/// "cam"), the addresses that got its packets.
pub type Delivered = Vec<(usize, &'static str, Vec<SocketAddr>)>;

impl Room {
    /// One 20 ms step: every participant sends an audio packet (loud, with a syllable
    /// dip every seventh, when in `speaking`; room noise otherwise) and, with `video`, a
    /// one-packet frame of its top layer (a key frame every tenth step), then time moves
    /// on 20 ms.
    pub fn step(&mut self, speaking: &[usize], video: bool, n: u64) -> Delivered {
        let mut out = Vec::new();
        for i in 0..self.agents.len() {
            let dbov = if speaking.contains(&i) {
                if n % 7 == 3 { 45 } else { 18 + (n % 5) as u8 }
            } else {
                85 + (n % 3) as u8
            };
            let h = self.speak(i, dbov);
            out.push((i, "mic", h.dsts()));
            if video {
                let hs = self.frame(i, 2, n.is_multiple_of(10), 1);
                out.push((i, "cam", hs[0].dsts()));
            }
        }
        self.sim.advance(std::time::Duration::from_millis(20));
        out
    }
}
