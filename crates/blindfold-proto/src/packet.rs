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

const RTCP_SR: u8 = 200;
const RTCP_RR: u8 = 201;
const RTCP_RTPFB: u8 = 205;
const RTCP_PSFB: u8 = 206;
const PSFB_FIR: u8 = 4;

/// The sender SSRC of an (S)RTCP compound that starts with a sender report, which goes to
/// the subscribers of that SSRC. Only the first eight bytes (header and sender SSRC) are
/// read: they stay clear even in encrypted SRTCP.
#[inline]
pub fn rtcp_sender_report(pkt: &[u8]) -> Option<u32> {
    match pkt {
        [b0, RTCP_SR, _, _, s0, s1, s2, s3, ..] if b0 >> 6 == 2 => {
            Some(u32::from_be_bytes([*s0, *s1, *s2, *s3]))
        }
        _ => None,
    }
}

/// Every media SSRC a receiver-feedback compound names, in order, possibly repeated: each
/// RR report block, each RTPFB/PSFB media SSRC, each FIR entry. SRTCP cannot be split, so
/// the whole compound goes to the publisher of every SSRC named here (that the sender
/// may address).
///
/// The compound is readable because receivers send feedback with E=0. The walk stops at
/// the first header that is not RTCP version 2 with a length fitting the datagram, which
/// is where the SRTCP trailer starts; an SSRC is read only from inside its own packet's
/// declared length. Allocates nothing.
#[inline]
pub fn rtcp_media_ssrcs(pkt: &[u8]) -> MediaSsrcs<'_> {
    MediaSsrcs {
        pkt,
        off: 0,
        index: 0,
    }
}

/// Iterator returned by [`rtcp_media_ssrcs`].
#[derive(Debug, Clone)]
pub struct MediaSsrcs<'a> {
    pkt: &'a [u8],
    /// Start of the current RTCP packet in the compound.
    off: usize,
    /// Which of the current packet's SSRCs comes next.
    index: usize,
}

impl Iterator for MediaSsrcs<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            let hdr = self.pkt.get(self.off..self.off.checked_add(4)?)?;
            let (b0, pt) = (hdr[0], hdr[1]);
            if b0 >> 6 != 2 || !(192..=223).contains(&pt) {
                return None;
            }
            let len = 4 * (usize::from(u16::from_be_bytes([hdr[2], hdr[3]])) + 1);
            let packet = self.pkt.get(self.off..self.off + len)?;
            let count = usize::from(b0 & 0x1f);
            // Offset of this packet's `index`-th media SSRC, if it has one.
            let at = match pt {
                RTCP_RR if self.index < count => Some(8 + 24 * self.index),
                RTCP_PSFB if count == usize::from(PSFB_FIR) => Some(12 + 8 * self.index),
                RTCP_RTPFB | RTCP_PSFB if self.index == 0 => Some(8),
                _ => None,
            };
            if let Some(w) = at.and_then(|at| packet.get(at..at + 4)) {
                self.index += 1;
                return Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
            }
            self.off += len;
            self.index = 0;
        }
    }
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
            let _ = rtcp_sender_report(data);
            rtcp_media_ssrcs(data).for_each(drop);
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

    fn ssrcs(pkt: &[u8]) -> Vec<u32> {
        rtcp_media_ssrcs(pkt).collect()
    }

    #[test]
    fn sr_goes_to_sender_subscribers() {
        let mut p = rtcp_hdr(0, 200, 6);
        p.extend_from_slice(&0x1234u32.to_be_bytes());
        p.extend(std::iter::repeat_n(0x55, 20 + 30)); // encrypted remainder
        assert_eq!(rtcp_sender_report(&p), Some(0x1234));
        assert_eq!(rtcp_sender_report(&p[..7]), None);
        let mut rr = p.clone();
        rr[1] = 201;
        assert_eq!(rtcp_sender_report(&rr), None);
    }

    #[test]
    fn feedback_names_every_media_ssrc() {
        // RR with report blocks about 0xabc and 0xdef.
        let mut rr = rtcp_hdr(2, 201, 13);
        rr.extend_from_slice(&1u32.to_be_bytes());
        for s in [0xabcu32, 0xdef] {
            rr.extend_from_slice(&s.to_be_bytes());
            rr.extend(std::iter::repeat_n(0, 20));
        }
        assert_eq!(ssrcs(&rr), vec![0xabc, 0xdef]);

        // Empty RR, then a PLI about 0x77, then an SRTCP trailer.
        let mut c = rtcp_hdr(0, 201, 1);
        c.extend_from_slice(&1u32.to_be_bytes());
        c.extend(rtcp_hdr(1, 206, 2));
        c.extend_from_slice(&1u32.to_be_bytes());
        c.extend_from_slice(&0x77u32.to_be_bytes());
        c.extend_from_slice(&[0x00, 0, 0, 5]);
        c.extend(std::iter::repeat_n(0x99, 16));
        assert_eq!(ssrcs(&c), vec![0x77]);

        // NACK.
        let mut n = rtcp_hdr(1, 205, 3);
        n.extend_from_slice(&1u32.to_be_bytes());
        n.extend_from_slice(&0x99u32.to_be_bytes());
        n.extend_from_slice(&[0, 5, 0, 0]);
        assert_eq!(ssrcs(&n), vec![0x99]);

        // FIR names the media in its FCI entries, two of them here.
        let mut f = rtcp_hdr(4, 206, 6);
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        for s in [0x55u32, 0x56] {
            f.extend_from_slice(&s.to_be_bytes());
            f.extend_from_slice(&[1, 0, 0, 0]);
        }
        assert_eq!(ssrcs(&f), vec![0x55, 0x56]);

        // All of them in one compound, in order.
        let all = [rr, n, f].concat();
        assert_eq!(ssrcs(&all), vec![0xabc, 0xdef, 0x99, 0x55, 0x56]);
    }

    #[test]
    fn unroutable_rtcp_names_nothing() {
        // SDES alone.
        let mut s = rtcp_hdr(1, 202, 1);
        s.extend_from_slice(&1u32.to_be_bytes());
        assert!(ssrcs(&s).is_empty());
        // RR whose declared length is too short to hold the report block it claims.
        let mut rr = rtcp_hdr(1, 201, 1);
        rr.extend_from_slice(&1u32.to_be_bytes());
        rr.extend_from_slice(&0xabcu32.to_be_bytes());
        assert!(ssrcs(&rr).is_empty());
        // Truncated header; a packet longer than the datagram.
        assert!(ssrcs(&[0x80, 201, 0]).is_empty());
        let mut long = rtcp_hdr(1, 205, 9);
        long.extend_from_slice(&[0; 8]);
        assert!(ssrcs(&long).is_empty());
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
