//! What a participant sends for selective forwarding: RTP packets carrying the RFC 8285
//! extensions the forwarder reads (audio level on audio, frame marking on video), a
//! synthetic talker, and a synthetic three-layer simulcast codec whose frames depend on
//! each other the way a real codec's do, so a receiver can tell a decodable sequence from
//! one a forwarder broke.
//!
//! Owns packet contents, the codec's frame dependencies and key frame requests; sans-IO
//! (times are passed in), no keys, no sockets. Must not touch the key schedule or the
//! forwarder's rules: it only writes what a real sender would.
//!
//! # The synthetic codec
//! Each layer is its own SSRC with its own frame counter. A frame is independent (I,
//! a key frame) every [`KEY_EVERY`] of its frames and whenever a key frame of that layer
//! was asked for (PLI/FIR), at most once per [`KEY_MIN_GAP`]; every other frame depends
//! on the previous frame of its layer and decodes only if that one did. Each packet's
//! payload starts with the stream tag (SSRC, sequence) and a frame header (layer, key,
//! frame number, packet index, packet count), then bytes any receiver can check, all
//! encrypted and authenticated by SRTP; the frame marking in the clear says the same
//! (start, end, independent) to the forwarder.

use blindfold_proto::ext::{self, AudioLevel, FrameMarking};

use crate::media::{RTP_HEADER, VIDEO_PT, pattern};

/// Octets of the stream tag at the head of every payload (SSRC and sequence).
const TAG: usize = 6;
/// Octets of the frame header after the tag.
const FRAME_HEADER: usize = 10;
/// A key frame every this many frames of a layer (about 5 s at 30 fps).
pub const KEY_EVERY: u32 = 150;
/// Key frames asked for are made at most this often per layer.
pub const KEY_MIN_GAP: u64 = 100;

/// One simulcast layer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Bits per second.
    pub bitrate_bps: u32,
    /// Frames per second (30 or a divisor of it).
    pub fps: u32,
}

/// The three layers: 1.2 Mbit/s at 30 fps, 400 kbit/s at 30 fps, 120 kbit/s at
/// 15 fps, highest last (the forwarder numbers layers from the lowest).
pub const LAYERS: [LayerSpec; 3] = [
    LayerSpec {
        bitrate_bps: 120_000,
        fps: 15,
    },
    LayerSpec {
        bitrate_bps: 400_000,
        fps: 30,
    },
    LayerSpec {
        bitrate_bps: 1_200_000,
        fps: 30,
    },
];

/// What a video packet's frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Layer (0 = lowest).
    pub layer: u8,
    /// Independent: decodes on its own.
    pub key: bool,
    /// Frame number within its layer; a delta frame depends on `frame - 1`.
    pub frame: u32,
    /// This packet's index in the frame.
    pub index: u16,
    /// Packets in the frame.
    pub count: u16,
}

/// Builds the plaintext RTP packet `seq` of `ssrc`: header, one-byte-form extension
/// block with `ext` elements, then a payload of `payload_len` octets whose head is the
/// stream tag and `frame` (for video), the rest checkable by [`check_payload`].
#[allow(clippy::too_many_arguments)]
pub fn build_packet(
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    pt: u8,
    marker: bool,
    ext_elements: &[(u8, u8)],
    frame: Option<FrameHeader>,
    payload_len: usize,
    spare: usize,
) -> Vec<u8> {
    let head = TAG + if frame.is_some() { FRAME_HEADER } else { 0 };
    let payload_len = payload_len.max(head);
    let mut p = Vec::with_capacity(RTP_HEADER + 8 + payload_len + spare);
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if !ext_elements.is_empty() {
        let data: Vec<[u8; 1]> = ext_elements.iter().map(|&(_, b)| [b]).collect();
        let elements: Vec<(u8, &[u8])> = ext_elements
            .iter()
            .zip(&data)
            .map(|(&(id, _), d)| (id, &d[..]))
            .collect();
        let mut block = Vec::with_capacity(8);
        if ext::write_block(&mut block, &elements).is_some() {
            p[0] |= 0x10;
            p.extend_from_slice(&block);
        }
    }
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    if let Some(f) = frame {
        p.push(f.layer);
        p.push(u8::from(f.key));
        p.extend_from_slice(&f.frame.to_be_bytes());
        p.extend_from_slice(&f.index.to_be_bytes());
        p.extend_from_slice(&f.count.to_be_bytes());
    }
    p.extend((head..payload_len).map(|i| pattern(ssrc, seq, i)));
    p
}

/// Checks a decrypted payload built by [`build_packet`] for packet `seq` of `ssrc`;
/// returns its frame header for video (`with_frame`), `Some(None)` for audio, `None`
/// when the content is wrong.
pub fn check_payload(
    ssrc: u32,
    seq: u16,
    payload: &[u8],
    with_frame: bool,
) -> Option<Option<FrameHeader>> {
    let head = TAG + if with_frame { FRAME_HEADER } else { 0 };
    if payload.len() < head
        || payload[..4] != ssrc.to_be_bytes()
        || payload[4..6] != seq.to_be_bytes()
    {
        return None;
    }
    let ok = payload[head..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(ssrc, seq, i + head));
    if !ok {
        return None;
    }
    if !with_frame {
        return Some(None);
    }
    let h = &payload[TAG..head];
    let header = FrameHeader {
        layer: h[0],
        key: h[1] == 1,
        frame: u32::from_be_bytes([h[2], h[3], h[4], h[5]]),
        index: u16::from_be_bytes([h[6], h[7]]),
        count: u16::from_be_bytes([h[8], h[9]]),
    };
    (header.count > 0 && header.index < header.count).then_some(Some(header))
}

/// A synthetic talker: the RFC 6464 level of each audio packet, loud with syllable dips
/// while talking, room noise otherwise.
#[derive(Debug, Clone, Default)]
pub struct Voice {
    n: u64,
}

impl Voice {
    /// The next packet's level.
    pub fn next(&mut self, talking: bool) -> AudioLevel {
        self.n += 1;
        let wobble = (self.n.wrapping_mul(0x9E37_79B9) >> 7) % 6;
        let dbov = if talking {
            // Syllables: a softer packet now and then, still well above the noise.
            if self.n % 9 == 4 {
                38
            } else {
                16 + wobble as u8
            }
        } else {
            80 + wobble as u8
        };
        AudioLevel {
            dbov,
            voice: talking,
        }
    }
}

/// One layer's sender state.
#[derive(Debug, Clone)]
struct Layer {
    spec: LayerSpec,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    frame: u32,
    /// A key frame was asked for.
    key_wanted: bool,
    /// When (ms) the last key frame went out.
    last_key_ms: Option<u64>,
    packets: usize,
    payload: usize,
}

/// A three-layer simulcast video sender with frame marking.
#[derive(Debug, Clone)]
pub struct SimulcastSender {
    layers: Vec<Layer>,
    frame_marking: u8,
    tick: u64,
    /// Key frames made because a receiver asked.
    pub keys_on_request: u64,
}

impl SimulcastSender {
    /// A sender of `specs` (lowest first) on `ssrcs`, packets of about `packet_bytes` on
    /// the wire with `overhead` octets of SRTP, frame marking at extension id `fm`.
    pub fn new(
        specs: &[LayerSpec],
        ssrcs: &[u32],
        fm: u8,
        packet_bytes: usize,
        overhead: usize,
        mut rand: impl FnMut() -> u32,
    ) -> Self {
        let layers = specs
            .iter()
            .zip(ssrcs)
            .map(|(&spec, &ssrc)| {
                let (packets, payload) = crate::media::video_frame_plan(
                    spec.bitrate_bps,
                    spec.fps,
                    packet_bytes,
                    overhead + 8,
                );
                Layer {
                    spec,
                    ssrc,
                    seq: rand() as u16,
                    timestamp: rand(),
                    frame: 0,
                    key_wanted: true,
                    last_key_ms: None,
                    packets,
                    payload,
                }
            })
            .collect();
        Self {
            layers,
            frame_marking: fm,
            tick: 0,
            keys_on_request: 0,
        }
    }

    /// The layers' SSRCs, lowest first.
    pub fn ssrcs(&self) -> Vec<u32> {
        self.layers.iter().map(|l| l.ssrc).collect()
    }

    /// A receiver asked for a key frame of `ssrc` (PLI or FIR): the layer's next frame is
    /// one, unless one went out less than [`KEY_MIN_GAP`] ms ago. Returns whether `ssrc`
    /// is one of this sender's.
    pub fn request_key(&mut self, ssrc: u32) -> bool {
        match self.layers.iter_mut().find(|l| l.ssrc == ssrc) {
            Some(l) => {
                l.key_wanted = true;
                true
            }
            None => false,
        }
    }

    /// The frames due at this 30 fps tick (`now_ms`), lowest layer first, each as
    /// `(ssrc, sequence, plaintext packet)`: every layer at 30 fps, a 15 fps layer every
    /// other tick.
    pub fn tick(&mut self, now_ms: u64, spare: usize) -> Vec<(u32, u16, Vec<u8>)> {
        let tick = self.tick;
        self.tick += 1;
        let fm_id = self.frame_marking;
        let mut out = Vec::new();
        for (li, l) in self.layers.iter_mut().enumerate() {
            let every = (30 / l.spec.fps.clamp(1, 30)).max(1) as u64;
            if !tick.is_multiple_of(every) {
                continue;
            }
            let asked = l.key_wanted
                && l.last_key_ms
                    .is_none_or(|t| now_ms.saturating_sub(t) >= KEY_MIN_GAP);
            let key = asked || l.frame.is_multiple_of(KEY_EVERY);
            if key {
                if asked && !l.frame.is_multiple_of(KEY_EVERY) {
                    self.keys_on_request += 1;
                }
                l.key_wanted = false;
                l.last_key_ms = Some(now_ms);
            }
            let count = l.packets as u16;
            for index in 0..count {
                let fm = FrameMarking {
                    start: index == 0,
                    end: index + 1 == count,
                    independent: key,
                    ..FrameMarking::default()
                };
                let header = FrameHeader {
                    layer: li as u8,
                    key,
                    frame: l.frame,
                    index,
                    count,
                };
                let pkt = build_packet(
                    l.ssrc,
                    l.seq,
                    l.timestamp,
                    VIDEO_PT,
                    index + 1 == count,
                    &[(fm_id, fm.to_byte())],
                    Some(header),
                    l.payload,
                    spare,
                );
                out.push((l.ssrc, l.seq, pkt));
                l.seq = l.seq.wrapping_add(1);
            }
            l.frame = l.frame.wrapping_add(1);
            l.timestamp = l.timestamp.wrapping_add(90_000 / l.spec.fps.max(1));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_extension_tag_and_frame_header() {
        let f = FrameHeader {
            layer: 2,
            key: true,
            frame: 77,
            index: 1,
            count: 3,
        };
        let p = build_packet(9, 5, 1, VIDEO_PT, false, &[(4, 0xa0)], Some(f), 200, 0);
        assert_eq!(p[0] & 0x10, 0x10);
        assert_eq!(
            ext::frame_marking(&p, 4).unwrap().unwrap(),
            FrameMarking::parse(&[0xa0]).unwrap()
        );
        let payload = &p[RTP_HEADER + 8..];
        assert_eq!(check_payload(9, 5, payload, true), Some(Some(f)));
        assert_eq!(check_payload(9, 6, payload, true), None);
        let mut bad = payload.to_vec();
        bad[40] ^= 1;
        assert_eq!(check_payload(9, 5, &bad, true), None);
        let a = build_packet(9, 5, 1, 111, false, &[(1, 0x90)], None, 100, 0);
        assert_eq!(check_payload(9, 5, &a[RTP_HEADER + 8..], false), Some(None));
    }
}
