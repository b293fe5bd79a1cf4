//! Datagram classification (RFC 7983 / RFC 9443, RFC 5761) and the few RTP/RTCP header
//! fields the forwarder reads to route.
//!
//! Owns byte-level header reads only. Never reads, copies or interprets a payload, and
//! never needs a key: everything read here is in the clear in SRTP and in SRTCP sent
//! with E=0 (receiver feedback). Every function is total: any byte string yields a
//! value or `None`, never a panic.

/// What a datagram is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// First byte 0..=3: STUN (RFC 7983).
    Stun,
    /// First byte 128..=191 and second byte not an RTCP packet type.
    Rtp,
    /// First byte 128..=191 and second byte 192..=223 (RFC 5761 §4).
    Rtcp,
    /// DTLS, TURN channel data, QUIC or anything else: not ours to forward.
    Other,
}

/// Classifies a datagram by its first byte (and, for RTP/RTCP, its second).
#[inline]
pub fn classify(pkt: &[u8]) -> Class {
    match pkt.first() {
        Some(0..=3) => Class::Stun,
        Some(128..=191) => match pkt.get(1) {
            Some(192..=223) => Class::Rtcp,
            Some(_) => Class::Rtp,
            None => Class::Other,
        },
        _ => Class::Other,
    }
}

/// Minimum RTP header length (RFC 3550 §5.1).
pub const RTP_HEADER_MIN: usize = 12;

/// The SSRC of an RTP packet, after checking that the fixed header, the CSRC list and any
/// header extension fit in the datagram (so a receiver's parser cannot be handed a
/// header that lies about its length).
#[inline]
pub fn rtp_ssrc(pkt: &[u8]) -> Option<u32> {
    if pkt.len() < RTP_HEADER_MIN || pkt[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(pkt[0] & 0x0f);
    let mut end = RTP_HEADER_MIN + 4 * cc;
    if pkt[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*pkt.get(end + 2)?, *pkt.get(end + 3)?]);
        end += 4 + 4 * usize::from(words);
    }
    if end > pkt.len() {
        return None;
    }
    Some(u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]))
}

/// Where an RTCP datagram must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpRoute {
    /// A sender report: to the subscribers of this (sender) SSRC.
    FromSender(u32),
    /// Receiver feedback (RR, NACK, PLI, FIR, ...): to the publisher of this media SSRC.
    ToMedia(u32),
}

const RTCP_SR: u8 = 200;
const RTCP_RR: u8 = 201;
const RTCP_RTPFB: u8 = 205;
const RTCP_PSFB: u8 = 206;
const PSFB_FIR: u8 = 4;

/// Finds the routing target of an (S)RTCP compound packet.
///
/// A compound starting with an SR goes to the sender's subscribers: only its first eight
/// bytes (header and sender SSRC) are read, which stay clear even in encrypted SRTCP.
/// Otherwise the compound is walked (readable because receivers send feedback with E=0)
/// until the first packet that names a media source: an RR report block, an RTPFB/PSFB
/// media SSRC, or a FIR entry. The walk stops at the first header that is not RTCP
/// version 2 with a length fitting the datagram, which is where the SRTCP trailer starts.
pub fn rtcp_route(pkt: &[u8]) -> Option<RtcpRoute> {
    let mut off = 0;
    let mut first = true;
    while pkt.len() >= off + 8 {
        let b0 = pkt[off];
        let pt = pkt[off + 1];
        if b0 >> 6 != 2 || !(192..=223).contains(&pt) {
            return None;
        }
        let words = usize::from(u16::from_be_bytes([pkt[off + 2], pkt[off + 3]]));
        let len = 4 * (words + 1);
        let count = b0 & 0x1f;
        let word = |at: usize| -> Option<u32> {
            let b = pkt.get(off + at..off + at + 4)?;
            // The word must lie inside this packet's own declared length.
            (at + 4 <= len).then(|| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match pt {
            RTCP_SR if first => {
                return Some(RtcpRoute::FromSender(u32::from_be_bytes([
                    pkt[4], pkt[5], pkt[6], pkt[7],
                ])));
            }
            RTCP_RR if count > 0 => return word(8).map(RtcpRoute::ToMedia),
            RTCP_PSFB if count == PSFB_FIR => return word(12).map(RtcpRoute::ToMedia),
            RTCP_RTPFB | RTCP_PSFB => return word(8).map(RtcpRoute::ToMedia),
            _ => {}
        }
        first = false;
        if off + len > pkt.len() {
            return None;
        }
        off += len;
    }
    None
}

#[cfg(any(test, feature = "fuzzing"))]
/// A fuzz entry point over everything the forwarder reads from a datagram; it must
/// never panic.
pub fn fuzz_classify(data: &[u8]) {
    match classify(data) {
        Class::Rtp => {
            let _ = rtp_ssrc(data);
        }
        Class::Rtcp => {
            let _ = rtcp_route(data);
        }
        Class::Stun | Class::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32, cc: u8, ext_words: Option<u16>, payload: usize) -> Vec<u8> {
        let mut p = vec![0x80 | cc, 96, 0, 1, 0, 0, 0, 160];
        if ext_words.is_some() {
            p[0] |= 0x10;
        }
        p.extend_from_slice(&ssrc.to_be_bytes());
        for i in 0..cc {
            p.extend_from_slice(&u32::from(i).to_be_bytes());
        }
        if let Some(w) = ext_words {
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&w.to_be_bytes());
            p.extend(std::iter::repeat_n(0, 4 * usize::from(w)));
        }
        p.extend(std::iter::repeat_n(0xaa, payload));
        p
    }

    fn rtcp_hdr(count: u8, pt: u8, words: u16) -> Vec<u8> {
        let mut v = vec![0x80 | count, pt];
        v.extend_from_slice(&words.to_be_bytes());
        v
    }

    #[test]
    fn classifies_by_first_bytes() {
        assert_eq!(classify(&[0x00, 0x01]), Class::Stun);
        assert_eq!(classify(&[0x80, 96]), Class::Rtp);
        assert_eq!(classify(&[0x80, 96 | 0x80]), Class::Rtp); // marker set, PT 96
        assert_eq!(classify(&[0x80, 200]), Class::Rtcp);
        assert_eq!(classify(&[0x81, 205]), Class::Rtcp);
        assert_eq!(classify(&[22, 254]), Class::Other); // DTLS
        assert_eq!(classify(&[64]), Class::Other); // TURN channel
        assert_eq!(classify(&[0x80]), Class::Other);
        assert_eq!(classify(&[]), Class::Other);
    }

    #[test]
    fn rtp_ssrc_checks_header_lengths() {
        assert_eq!(rtp_ssrc(&rtp(0xdeadbeef, 0, None, 10)), Some(0xdeadbeef));
        assert_eq!(rtp_ssrc(&rtp(7, 2, Some(1), 0)), Some(7));
        let p = rtp(7, 2, Some(3), 0);
        assert_eq!(rtp_ssrc(&p[..p.len() - 1]), None);
        let mut v1 = rtp(7, 0, None, 4);
        v1[0] = 0x40;
        assert_eq!(rtp_ssrc(&v1), None);
        assert_eq!(rtp_ssrc(&rtp(7, 0, None, 0)[..11]), None);
    }

    #[test]
    fn sr_goes_to_sender_subscribers() {
        let mut p = rtcp_hdr(0, 200, 6);
        p.extend_from_slice(&0x1234u32.to_be_bytes());
        p.extend(std::iter::repeat_n(0x55, 20 + 30)); // encrypted remainder
        assert_eq!(rtcp_route(&p), Some(RtcpRoute::FromSender(0x1234)));
    }

    #[test]
    fn feedback_goes_to_media_owner() {
        // RR with one report block about 0xabc.
        let mut rr = rtcp_hdr(1, 201, 7);
        rr.extend_from_slice(&1u32.to_be_bytes());
        rr.extend_from_slice(&0xabcu32.to_be_bytes());
        rr.extend(std::iter::repeat_n(0, 20));
        assert_eq!(rtcp_route(&rr), Some(RtcpRoute::ToMedia(0xabc)));

        // Empty RR, then a PLI about 0x77, then an SRTCP trailer.
        let mut c = rtcp_hdr(0, 201, 1);
        c.extend_from_slice(&1u32.to_be_bytes());
        c.extend(rtcp_hdr(1, 206, 2));
        c.extend_from_slice(&1u32.to_be_bytes());
        c.extend_from_slice(&0x77u32.to_be_bytes());
        c.extend_from_slice(&[0x00, 0, 0, 5]);
        c.extend(std::iter::repeat_n(0x99, 16));
        assert_eq!(rtcp_route(&c), Some(RtcpRoute::ToMedia(0x77)));

        // NACK.
        let mut n = rtcp_hdr(1, 205, 3);
        n.extend_from_slice(&1u32.to_be_bytes());
        n.extend_from_slice(&0x99u32.to_be_bytes());
        n.extend_from_slice(&[0, 5, 0, 0]);
        assert_eq!(rtcp_route(&n), Some(RtcpRoute::ToMedia(0x99)));

        // FIR names the media in its FCI.
        let mut f = rtcp_hdr(4, 206, 4);
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&0x55u32.to_be_bytes());
        f.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(rtcp_route(&f), Some(RtcpRoute::ToMedia(0x55)));
    }

    #[test]
    fn unroutable_rtcp_is_none() {
        // SDES alone.
        let mut s = rtcp_hdr(1, 202, 1);
        s.extend_from_slice(&1u32.to_be_bytes());
        assert_eq!(rtcp_route(&s), None);
        // RR whose declared length is too short to hold the report block it claims.
        let mut rr = rtcp_hdr(1, 201, 1);
        rr.extend_from_slice(&1u32.to_be_bytes());
        rr.extend_from_slice(&0xabcu32.to_be_bytes());
        assert_eq!(rtcp_route(&rr), None);
        // Truncated header.
        assert_eq!(rtcp_route(&[0x80, 201, 0]), None);
    }

    #[test]
    fn every_truncation_and_byte_is_total() {
        let mut samples = vec![rtp(1, 3, Some(2), 20)];
        let mut rr = rtcp_hdr(1, 201, 7);
        rr.extend(std::iter::repeat_n(1, 28));
        samples.push(rr);
        for s in samples {
            for n in 0..=s.len() {
                fuzz_classify(&s[..n]);
            }
            for i in 0..s.len() {
                for b in [0u8, 0x1f, 0x80, 0xff] {
                    let mut m = s.clone();
                    m[i] = b;
                    fuzz_classify(&m);
                }
            }
        }
    }
}
