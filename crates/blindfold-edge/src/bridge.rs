//! The translation between a browser's media and the forwarder's participant format, as
//! pure functions and one small state machine ([`Slots`]): no sockets, no clocks of its
//! own, no keys.
//!
//! The forwarder leg carries plain RTP/RTCP: the payloads a browser sends are already
//! SFrame ciphertext (its encoded-frame transform runs before packetisation), so the edge
//! removes only the hop's SRTP and never sees a frame in the clear. Payload types are
//! rewritten to canonical numbers ([`OPUS_PT`], [`VP8_PT`]) so browsers that negotiated
//! different numbers with their edges understand each other. Header extensions are not
//! carried over (the forwarder needs none of them today).
//!
//! Must not touch: sockets, str0m, anything that could decrypt a frame.

use std::time::{Duration, Instant};

/// Canonical payload type of Opus on the forwarder leg.
pub const OPUS_PT: u8 = 111;
/// Canonical payload type of VP8 on the forwarder leg.
pub const VP8_PT: u8 = 96;
/// RTP fixed header length.
pub const RTP_HEADER: usize = 12;
/// A source that sent nothing for this long gives its slot back.
pub const SLOT_IDLE: Duration = Duration::from_secs(3);

/// The media kinds the edge forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

impl Kind {
    /// The kind a canonical payload type carries, if any.
    pub fn of_canonical_pt(pt: u8) -> Option<Kind> {
        match pt {
            OPUS_PT => Some(Kind::Audio),
            VP8_PT => Some(Kind::Video),
            _ => None,
        }
    }

    /// The canonical payload type of this kind.
    pub fn canonical_pt(self) -> u8 {
        match self {
            Kind::Audio => OPUS_PT,
            Kind::Video => VP8_PT,
        }
    }
}

/// The fields of an RTP packet the edge carries across.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtp<'a> {
    /// Marker bit (end of a video frame).
    pub marker: bool,
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// The payload, padding removed.
    pub payload: &'a [u8],
}

/// Parses an RTP packet; `None` for anything malformed (lengths that do not fit, wrong
/// version, padding longer than the payload). Never panics.
pub fn parse_rtp(pkt: &[u8]) -> Option<Rtp<'_>> {
    if pkt.len() < RTP_HEADER || pkt[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(pkt[0] & 0x0f);
    let mut start = RTP_HEADER + 4 * cc;
    if pkt[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*pkt.get(start + 2)?, *pkt.get(start + 3)?]);
        start += 4 + 4 * usize::from(words);
    }
    let mut end = pkt.len();
    if pkt[0] & 0x20 != 0 {
        let pad = usize::from(*pkt.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(Rtp {
        marker: pkt[1] & 0x80 != 0,
        pt: pkt[1] & 0x7f,
        seq: u16::from_be_bytes([pkt[2], pkt[3]]),
        timestamp: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
        ssrc: u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]),
        payload: &pkt[start..end],
    })
}

/// Writes `rtp` as a plain RTP packet (no CSRC, no extension) into `out`; returns its
/// length, or `None` if `out` is too small.
pub fn write_rtp(out: &mut [u8], rtp: &Rtp<'_>) -> Option<usize> {
    let len = RTP_HEADER + rtp.payload.len();
    let out = out.get_mut(..len)?;
    out[0] = 0x80;
    out[1] = (u8::from(rtp.marker) << 7) | (rtp.pt & 0x7f);
    out[2..4].copy_from_slice(&rtp.seq.to_be_bytes());
    out[4..8].copy_from_slice(&rtp.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&rtp.ssrc.to_be_bytes());
    out[RTP_HEADER..].copy_from_slice(rtp.payload);
    Some(len)
}

/// A Picture Loss Indication (RFC 4585 §6.3.1) from `sender` about `media`: plain RTCP,
/// which the forwarder routes to the publisher of `media`.
pub fn pli(sender: u32, media: u32) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0] = 0x81; // V=2, FMT=1 (PLI)
    p[1] = 206; // PSFB
    p[2..4].copy_from_slice(&2u16.to_be_bytes());
    p[4..8].copy_from_slice(&sender.to_be_bytes());
    p[8..12].copy_from_slice(&media.to_be_bytes());
    p
}

/// The media SSRCs of every PLI or FIR in an RTCP compound (in order; a malformed tail
/// ends the walk). Never panics.
pub fn keyframe_requests(pkt: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        loop {
            let hdr = pkt.get(off..off.checked_add(4)?)?;
            let (b0, pt) = (hdr[0], hdr[1]);
            if b0 >> 6 != 2 || !(192..=223).contains(&pt) {
                return None;
            }
            let len = 4 * (usize::from(u16::from_be_bytes([hdr[2], hdr[3]])) + 1);
            let packet = pkt.get(off..off + len)?;
            off += len;
            let fmt = b0 & 0x1f;
            // PLI names its media SSRC at 8; FIR (FMT 4) names it in its first FCI entry.
            let at = match (pt, fmt) {
                (206, 1) => 8,
                (206, 4) => 12,
                _ => continue,
            };
            if let Some(w) = packet.get(at..at + 4) {
                return Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
        }
    })
}

/// One of the browser's receive slots (an m-line it offered as receive-only): which
/// forwarded source it shows now, and the sequence-number state that keeps the
/// browser's stream continuous when the source behind it changes.
#[derive(Debug, Clone)]
struct Slot {
    kind: Kind,
    source: Option<u32>,
    last_seen: Instant,
    /// Source sequence number last seen, and the extended number it was written as.
    last_src_seq: u16,
    last_ext: u64,
}

/// What [`Slots::route`] decided for a forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Write to slot `index` with extended sequence number `seq`; `fresh` when the slot
    /// was just given to this source (ask the source for a keyframe).
    Slot {
        /// Slot index (the order slots were added).
        index: usize,
        /// Extended sequence number to write with.
        seq: u64,
        /// The slot changed hands with this packet.
        fresh: bool,
    },
    /// Every slot of this kind shows another live source.
    NoSlot,
}

/// The browser's receive slots, handed to forwarded sources first come, first served and
/// taken back after [`SLOT_IDLE`] of silence.
#[derive(Debug, Default)]
pub struct Slots {
    slots: Vec<Slot>,
}

impl Slots {
    /// Adds a slot of `kind`; returns its index.
    pub fn add(&mut self, kind: Kind, now: Instant) -> usize {
        self.slots.push(Slot {
            kind,
            source: None,
            last_seen: now,
            last_src_seq: 0,
            last_ext: 0,
        });
        self.slots.len() - 1
    }

    /// The source a slot shows.
    pub fn source(&self, index: usize) -> Option<u32> {
        self.slots.get(index).and_then(|s| s.source)
    }

    /// Routes a packet of `kind` from `ssrc` with sequence number `seq`.
    pub fn route(&mut self, kind: Kind, ssrc: u32, seq: u16, now: Instant) -> Routed {
        let index = match self.slots.iter().position(|s| s.source == Some(ssrc)) {
            Some(i) => i,
            None => {
                let free = self.slots.iter().position(|s| {
                    s.kind == kind
                        && (s.source.is_none() || now.duration_since(s.last_seen) >= SLOT_IDLE)
                });
                let Some(i) = free else {
                    return Routed::NoSlot;
                };
                let s = &mut self.slots[i];
                s.source = Some(ssrc);
                s.last_seen = now;
                // Continue the slot's numbering with a gap, so the browser sees a loss,
                // not a reordering.
                s.last_ext += 100;
                s.last_src_seq = seq;
                return Routed::Slot {
                    index: i,
                    seq: s.last_ext,
                    fresh: true,
                };
            }
        };
        let s = &mut self.slots[index];
        s.last_seen = now;
        let delta = i64::from(seq.wrapping_sub(s.last_src_seq) as i16);
        let ext = s.last_ext.saturating_add_signed(delta);
        if delta > 0 {
            s.last_src_seq = seq;
            s.last_ext = ext;
        }
        Routed::Slot {
            index,
            seq: ext,
            fresh: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(marker: bool, pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; RTP_HEADER + payload.len()];
        let rtp = Rtp {
            marker,
            pt,
            seq,
            timestamp: 90_000,
            ssrc: 0xAABB_CCDD,
            payload,
        };
        let n = write_rtp(&mut out, &rtp).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn rtp_round_trips_and_strips_extensions_and_padding() {
        let p = pkt(true, VP8_PT, 7, b"sframe ciphertext");
        let r = parse_rtp(&p).unwrap();
        assert!(r.marker);
        assert_eq!(
            (r.pt, r.seq, r.timestamp, r.ssrc),
            (VP8_PT, 7, 90_000, 0xAABB_CCDD)
        );
        assert_eq!(r.payload, b"sframe ciphertext");

        // One-byte extension block of one word, then two bytes of padding.
        let mut q = p[..12].to_vec();
        q[0] |= 0x10 | 0x20;
        q.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0xFF, 0, 0]);
        q.extend_from_slice(b"abc");
        q.extend_from_slice(&[0, 2]);
        assert_eq!(parse_rtp(&q).unwrap().payload, b"abc");
    }

    #[test]
    fn malformed_rtp_is_refused_without_panic() {
        assert!(parse_rtp(&[]).is_none());
        assert!(parse_rtp(&[0x80; 11]).is_none());
        let mut p = pkt(false, OPUS_PT, 1, b"x");
        p[0] = 0x40; // version 1
        assert!(parse_rtp(&p).is_none());
        let mut p = pkt(false, OPUS_PT, 1, b"x");
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200; // padding longer than the packet
        assert!(parse_rtp(&p).is_none());
        let mut p = pkt(false, OPUS_PT, 1, b"");
        p[0] |= 0x10; // extension header missing
        assert!(parse_rtp(&p).is_none());
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8 | 0x80).collect();
            let _ = parse_rtp(&junk);
            let _ = keyframe_requests(&junk).count();
        }
    }

    #[test]
    fn a_pli_is_found_in_a_compound() {
        let mut rr = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        rr.extend_from_slice(&pli(9, 0x1234));
        assert_eq!(keyframe_requests(&rr).collect::<Vec<_>>(), vec![0x1234]);
        assert_eq!(keyframe_requests(&rr[..15]).count(), 0);
    }

    #[test]
    fn slots_go_to_sources_of_their_kind_and_are_reclaimed_after_silence() {
        let t0 = Instant::now();
        let mut s = Slots::default();
        let a = s.add(Kind::Audio, t0);
        let v = s.add(Kind::Video, t0);
        assert_eq!(
            s.route(Kind::Video, 1, 500, t0),
            Routed::Slot {
                index: v,
                seq: 100,
                fresh: true
            }
        );
        assert_eq!(s.route(Kind::Video, 2, 9, t0), Routed::NoSlot);
        assert!(matches!(s.route(Kind::Audio, 3, 9, t0), Routed::Slot { index, .. } if index == a));
        // Continuity across the source's own wrap, and a late packet keeps its place.
        let t1 = t0 + Duration::from_millis(10);
        assert!(matches!(
            s.route(Kind::Video, 1, 501, t1),
            Routed::Slot { seq: 101, .. }
        ));
        assert!(matches!(
            s.route(Kind::Video, 1, 500, t1),
            Routed::Slot { seq: 100, .. }
        ));
        // After the idle time the slot passes to the waiting source, numbering continued.
        let t2 = t1 + SLOT_IDLE;
        assert_eq!(
            s.route(Kind::Video, 2, 40_000, t2),
            Routed::Slot {
                index: v,
                seq: 201,
                fresh: true
            }
        );
        assert_eq!(s.source(v), Some(2));
    }
}
