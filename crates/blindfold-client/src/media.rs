//! Synthetic media for the headless participant: RTP packets whose payloads can be checked
//! byte for byte after decryption, and per-stream receive accounting (loss, reordering,
//! gaps).
//!
//! Owns packet contents and counting only; sans-IO, no clock reads (times are passed in),
//! no keys. Must not touch sockets or the key schedule.

/// RTP payload type of the synthetic audio track (dynamic range, as Opus usually is).
pub const AUDIO_PT: u8 = 111;
/// RTP payload type of the synthetic video track.
pub const VIDEO_PT: u8 = 96;
/// RTP fixed header length (no CSRCs, no extension).
pub const RTP_HEADER: usize = 12;
/// Octets at the head of every payload that name the stream and packet: SSRC and sequence.
const PAYLOAD_TAG: usize = 6;

/// The payload octet at `i` of packet `seq` on `ssrc`: cheap, and different for every
/// stream and packet, so a mis-keyed or mis-routed decryption cannot pass the check.
pub(crate) fn pattern(ssrc: u32, seq: u16, i: usize) -> u8 {
    let x = (i as u32)
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add(ssrc.rotate_left(7))
        .wrapping_add(u32::from(seq) << 3);
    (x >> 24) as u8 ^ (x as u8)
}

/// An RTP packet with a checkable payload of `payload_len` octets (at least 6), with
/// `spare` extra capacity for the SRTP tag and MKI.
pub fn build_rtp(
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    pt: u8,
    marker: bool,
    payload_len: usize,
    spare: usize,
) -> Vec<u8> {
    let payload_len = payload_len.max(PAYLOAD_TAG);
    let mut p = Vec::with_capacity(RTP_HEADER + payload_len + spare);
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend((PAYLOAD_TAG..payload_len).map(|i| pattern(ssrc, seq, i)));
    p
}

/// Whether a decrypted payload is exactly what [`build_rtp`] put in packet `seq` of `ssrc`.
pub fn check_payload(ssrc: u32, seq: u16, payload: &[u8]) -> bool {
    if payload.len() < PAYLOAD_TAG
        || payload[..4] != ssrc.to_be_bytes()
        || payload[4..6] != seq.to_be_bytes()
    {
        return false;
    }
    payload[PAYLOAD_TAG..]
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(ssrc, seq, i + PAYLOAD_TAG))
}

/// Receive accounting for one remote SSRC, over packets that decrypted.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    first: Option<u64>,
    highest: u64,
    /// Packets counted (each index once: SRTP replay protection drops duplicates).
    pub received: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    last_at_ms: Option<u64>,
    /// Longest time between two consecutive packets, in ms.
    pub max_gap_ms: u64,
}

impl StreamStats {
    /// The extended sequence number of `seq` nearest the highest seen (RFC 3550 A.1).
    fn extend(&self, seq: u16) -> u64 {
        if self.first.is_none() {
            // Start one cycle up so a packet from just before the first still fits.
            return (1 << 16) | u64::from(seq);
        }
        let base = self.highest & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b | u64::from(seq))
            .min_by_key(|c| c.abs_diff(self.highest))
            .unwrap_or(base | u64::from(seq))
    }

    /// Records a decrypted packet with sequence `seq` at `now_ms`.
    pub fn on_packet(&mut self, seq: u16, now_ms: u64) {
        let ext = self.extend(seq);
        match self.first {
            None => {
                self.first = Some(ext);
                self.highest = ext;
            }
            Some(first) => {
                if ext > self.highest {
                    self.highest = ext;
                } else {
                    self.reordered += 1;
                }
                if ext < first {
                    self.first = Some(ext);
                }
            }
        }
        self.received += 1;
        if let Some(last) = self.last_at_ms {
            self.max_gap_ms = self.max_gap_ms.max(now_ms.saturating_sub(last));
        }
        self.last_at_ms = Some(now_ms);
    }

    /// Packets missing between the first and the highest seen (RFC 3550 cumulative loss).
    pub fn lost(&self) -> u64 {
        match self.first {
            None => 0,
            Some(first) => (self.highest - first + 1).saturating_sub(self.received),
        }
    }
}

/// Packets per frame and payload size for a video track of `bitrate_bps` at `fps` in
/// packets of about `packet_bytes` on the wire (RTP header and SRTP overhead included).
pub fn video_frame_plan(
    bitrate_bps: u32,
    fps: u32,
    packet_bytes: usize,
    overhead: usize,
) -> (usize, usize) {
    let payload = packet_bytes
        .saturating_sub(RTP_HEADER + overhead)
        .max(PAYLOAD_TAG);
    let frame_bytes = (bitrate_bps as usize / 8) / fps.max(1) as usize;
    let packets = frame_bytes.div_ceil(payload).max(1);
    (packets, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checks_only_its_own_packet() {
        let p = build_rtp(0xdead_beef, 7, 960, AUDIO_PT, false, 100, 20);
        assert_eq!(p.len(), RTP_HEADER + 100);
        assert!(check_payload(0xdead_beef, 7, &p[RTP_HEADER..]));
        assert!(!check_payload(0xdead_beef, 8, &p[RTP_HEADER..]));
        assert!(!check_payload(0xdead_bef0, 7, &p[RTP_HEADER..]));
        let mut bad = p.clone();
        bad[50] ^= 1;
        assert!(!check_payload(0xdead_beef, 7, &bad[RTP_HEADER..]));
        assert!(!check_payload(
            0xdead_beef,
            7,
            &p[RTP_HEADER..RTP_HEADER + 3]
        ));
    }

    #[test]
    fn stream_stats_count_loss_reorder_and_gaps_across_wrap() {
        let mut s = StreamStats::default();
        for (i, seq) in [65534u16, 65535, 1, 0, 2, 5].into_iter().enumerate() {
            s.on_packet(seq, i as u64 * 20);
        }
        assert_eq!(s.received, 6);
        assert_eq!(s.reordered, 1, "0 after 1");
        assert_eq!(s.lost(), 2, "3 and 4 missing");
        assert_eq!(s.max_gap_ms, 20);
        s.on_packet(6, 1000);
        assert_eq!(s.max_gap_ms, 900);
    }

    #[test]
    fn video_plan_matches_the_bitrate() {
        let (n, payload) = video_frame_plan(1_500_000, 30, 1200, 20);
        assert_eq!(payload, 1168);
        assert!(n * payload * 30 * 8 >= 1_500_000);
        assert!((n - 1) * payload * 30 * 8 < 1_500_000);
    }
}
