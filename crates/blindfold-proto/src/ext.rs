//! RFC 8285 RTP header extensions: reading one element by its id (one-byte and two-byte
//! forms), the two elements selective forwarding reads, audio level (RFC 6464) and video
//! frame marking (RFC 9626), and a small writer for the senders that put them there.
//!
//! Owns byte-level reads of the extension block only. SRTP authenticates the header
//! extension but does not encrypt it, so everything read here is in the clear, readable
//! without a key, and cannot be forged by anyone but the sender. Never reads past the
//! block its header declares, never allocates on the read path, and every function is
//! total: any byte string gives a value, never a panic. The ids are per call: the
//! forwarder learns them from the control API (on the track), nothing here hard-codes one.

/// One-byte header form (RFC 8285 §4.2): the profile word.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Two-byte header form (RFC 8285 §4.3): the profile word, its low 4 bits "appbits".
pub const TWO_BYTE_PROFILE: u16 = 0x1000;
/// The largest id the one-byte form can carry (15 is reserved, 0 is padding).
pub const ONE_BYTE_MAX_ID: u8 = 14;

/// What a look-up for one extension element found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element<'a> {
    /// The element's data.
    Found(&'a [u8]),
    /// The packet has no extension block, a block in another profile, or no element with
    /// this id.
    Absent,
    /// The block or an element before the one sought does not fit: nothing can be read.
    Malformed,
}

/// The element `id` of an RTP packet's header extension (RFC 8285), in either form.
///
/// The fixed header, the CSRC list and the block's declared length must fit the packet
/// (as [`crate::packet::rtp_ssrc`] checks); otherwise the result is `Malformed`. In the
/// one-byte form a zero byte is padding and id 15 ends the block; in the two-byte form a
/// zero id byte is padding. The first element with `id` wins.
#[inline]
pub fn find(pkt: &[u8], id: u8) -> Element<'_> {
    let Some(&b0) = pkt.first() else {
        return Element::Malformed;
    };
    if b0 & 0x10 == 0 {
        return Element::Absent;
    }
    let start = crate::packet::RTP_HEADER_MIN + 4 * usize::from(b0 & 0x0f);
    let Some(hdr) = pkt.get(start..start + 4) else {
        return Element::Malformed;
    };
    let profile = u16::from_be_bytes([hdr[0], hdr[1]]);
    let words = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let Some(block) = pkt.get(start + 4..start + 4 + 4 * words) else {
        return Element::Malformed;
    };
    if id == 0 {
        return Element::Absent;
    }
    if profile == ONE_BYTE_PROFILE {
        one_byte(block, id)
    } else if profile & 0xfff0 == TWO_BYTE_PROFILE {
        two_byte(block, id)
    } else {
        Element::Absent
    }
}

fn one_byte(block: &[u8], id: u8) -> Element<'_> {
    let mut i = 0;
    while let Some(&b) = block.get(i) {
        let (eid, len) = (b >> 4, usize::from(b & 0x0f) + 1);
        match eid {
            0 => {
                // Padding: one byte, whatever its length bits say (as libwebrtc reads it).
                i += 1;
                continue;
            }
            15 => return Element::Absent,
            _ => {}
        }
        let Some(data) = block.get(i + 1..i + 1 + len) else {
            return Element::Malformed;
        };
        if eid == id {
            return Element::Found(data);
        }
        i += 1 + len;
    }
    Element::Absent
}

fn two_byte(block: &[u8], id: u8) -> Element<'_> {
    let mut i = 0;
    while let Some(&eid) = block.get(i) {
        if eid == 0 {
            i += 1;
            continue;
        }
        let Some(&len) = block.get(i + 1) else {
            return Element::Malformed;
        };
        let len = usize::from(len);
        let Some(data) = block.get(i + 2..i + 2 + len) else {
            return Element::Malformed;
        };
        if eid == id {
            return Element::Found(data);
        }
        i += 2 + len;
    }
    Element::Absent
}

/// RFC 6464 client-to-mixer audio level: the level in -dBov (0 is the loudest a
/// participant can send, 127 digital silence) and the voice-activity flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// 0..=127, in -dBov: lower is louder.
    pub dbov: u8,
    /// The sender's voice activity detector says this packet holds speech.
    pub voice: bool,
}

impl AudioLevel {
    /// Decodes the element's data (its first octet; longer data is padding).
    #[inline]
    pub fn parse(data: &[u8]) -> Option<Self> {
        let b = *data.first()?;
        Some(Self {
            dbov: b & 0x7f,
            voice: b & 0x80 != 0,
        })
    }

    /// The element's one octet.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice) << 7) | self.dbov.min(127)
    }
}

/// RFC 9626 video frame marking: the first octet, common to the short form (non-scalable
/// streams) and the long forms (which add layer id and TL0PICIDX octets, ignored here:
/// each simulcast layer is its own SSRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMarking {
    /// S: the first packet of a frame.
    pub start: bool,
    /// E: the last packet of a frame.
    pub end: bool,
    /// I: the frame decodes without any earlier frame (a key frame).
    pub independent: bool,
    /// D: no later frame depends on this one.
    pub discardable: bool,
    /// B: base layer sync.
    pub base_sync: bool,
    /// TID: temporal layer id, 0..=7.
    pub tid: u8,
}

impl FrameMarking {
    /// Decodes the element's data: 1 to 3 octets, of which the first is read.
    #[inline]
    pub fn parse(data: &[u8]) -> Option<Self> {
        if data.len() > 3 {
            return None;
        }
        let b = *data.first()?;
        Some(Self {
            start: b & 0x80 != 0,
            end: b & 0x40 != 0,
            independent: b & 0x20 != 0,
            discardable: b & 0x10 != 0,
            base_sync: b & 0x08 != 0,
            tid: b & 0x07,
        })
    }

    /// The short form's one octet.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.start) << 7)
            | (u8::from(self.end) << 6)
            | (u8::from(self.independent) << 5)
            | (u8::from(self.discardable) << 4)
            | (u8::from(self.base_sync) << 3)
            | (self.tid & 0x07)
    }

    /// Where a receiver can start decoding this layer: the first packet of a key frame.
    #[inline]
    pub fn switch_point(self) -> bool {
        self.start && self.independent
    }
}

/// The element `id` read as an audio level: `Ok(None)` when absent, `Err(())` when the
/// block or the element is malformed.
#[inline]
pub fn audio_level(pkt: &[u8], id: u8) -> Result<Option<AudioLevel>, Malformed> {
    match find(pkt, id) {
        Element::Found(d) => AudioLevel::parse(d).map(Some).ok_or(Malformed),
        Element::Absent => Ok(None),
        Element::Malformed => Err(Malformed),
    }
}

/// The element `id` read as frame marking: `Ok(None)` when absent, `Err` when the block
/// or the element is malformed.
#[inline]
pub fn frame_marking(pkt: &[u8], id: u8) -> Result<Option<FrameMarking>, Malformed> {
    match find(pkt, id) {
        Element::Found(d) => FrameMarking::parse(d).map(Some).ok_or(Malformed),
        Element::Absent => Ok(None),
        Element::Malformed => Err(Malformed),
    }
}

/// A header extension block or element that does not fit its own lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed RTP header extension")]
pub struct Malformed;

/// Writes an extension block holding `elements` (id, data) into `out` (cleared first):
/// the one-byte form when every id is 1..=14 and every element 1..=16 octets, else the
/// two-byte form; zero padding to a 32-bit boundary. Returns `None` for an id of 0, or
/// (two-byte form) an element over 255 octets. For senders and tests; the forwarder
/// never writes a header.
pub fn write_block(out: &mut Vec<u8>, elements: &[(u8, &[u8])]) -> Option<()> {
    out.clear();
    if elements.iter().any(|(id, _)| *id == 0) {
        return None;
    }
    let one = elements
        .iter()
        .all(|(id, d)| *id <= ONE_BYTE_MAX_ID && (1..=16).contains(&d.len()));
    let profile = if one {
        ONE_BYTE_PROFILE
    } else {
        TWO_BYTE_PROFILE
    };
    out.extend_from_slice(&profile.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for (id, d) in elements {
        if one {
            out.push((id << 4) | (d.len() as u8 - 1));
        } else {
            out.push(*id);
            out.push(u8::try_from(d.len()).ok()?);
        }
        out.extend_from_slice(d);
    }
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    let words = u16::try_from((out.len() - 4) / 4).ok()?;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    Some(())
}

/// Inserts the extension `block` (from [`write_block`]) into an RTP packet that has none:
/// after the fixed header and CSRCs, setting X. Returns `None` when the packet already
/// has one or is too short.
pub fn insert_block(pkt: &mut Vec<u8>, block: &[u8]) -> Option<()> {
    let b0 = *pkt.first()?;
    if b0 & 0x10 != 0 {
        return None;
    }
    let at = crate::packet::RTP_HEADER_MIN + 4 * usize::from(b0 & 0x0f);
    if pkt.len() < at {
        return None;
    }
    pkt.splice(at..at, block.iter().copied());
    pkt[0] |= 0x10;
    Some(())
}

#[cfg(any(test, feature = "fuzzing"))]
/// A fuzz entry point over the extension reads; they must never panic, and what they
/// find must lie inside the datagram's declared extension block.
pub fn fuzz_ext(data: &[u8]) {
    for id in [1, 2, 7, 14, 15, 200] {
        if let Element::Found(d) = find(data, id) {
            let base = data.as_ptr() as usize;
            let at = d.as_ptr() as usize;
            assert!(at >= base && at + d.len() <= base + data.len());
        }
        let _ = audio_level(data, id);
        let _ = frame_marking(data, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp_with(block: &[u8], csrcs: u8) -> Vec<u8> {
        let mut p = vec![0x80 | csrcs, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        for i in 0..csrcs {
            p.extend_from_slice(&u32::from(i).to_be_bytes());
        }
        insert_block(&mut p, block).unwrap();
        p.extend_from_slice(&[0xaa; 20]);
        p
    }

    fn block(elements: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        write_block(&mut b, elements).unwrap();
        b
    }

    #[test]
    fn one_byte_form_finds_each_element() {
        let b = block(&[(1, &[0x95]), (3, &[1, 2, 3]), (14, &[0xa0])]);
        assert_eq!(&b[..2], &[0xbe, 0xde]);
        for csrcs in [0, 2] {
            let p = rtp_with(&b, csrcs);
            assert_eq!(find(&p, 1), Element::Found(&[0x95]));
            assert_eq!(find(&p, 3), Element::Found(&[1, 2, 3]));
            assert_eq!(find(&p, 14), Element::Found(&[0xa0]));
            assert_eq!(find(&p, 2), Element::Absent);
            assert_eq!(
                audio_level(&p, 1),
                Ok(Some(AudioLevel {
                    dbov: 0x15,
                    voice: true
                }))
            );
            let fm = frame_marking(&p, 14).unwrap().unwrap();
            assert!(fm.start && !fm.end && fm.independent && fm.switch_point());
        }
    }

    #[test]
    fn two_byte_form_and_long_elements() {
        let long = [7u8; 40];
        let b = block(&[(20, &long), (2, &[0x40])]);
        assert_eq!(u16::from_be_bytes([b[0], b[1]]) & 0xfff0, TWO_BYTE_PROFILE);
        let p = rtp_with(&b, 1);
        assert_eq!(find(&p, 20), Element::Found(&long[..]));
        let fm = frame_marking(&p, 2).unwrap().unwrap();
        assert!(!fm.start && fm.end);
        // appbits in the profile's low nibble are allowed.
        let mut q = p.clone();
        q[12 + 4 + 1] |= 0x05;
        assert_eq!(find(&q, 2), Element::Found(&[0x40]));
        // Zero-length elements are legal in the two-byte form.
        let p = rtp_with(&block(&[(9, &[]), (3, &[1])]), 0);
        assert_eq!(find(&p, 9), Element::Found(&[]));
        assert_eq!(find(&p, 3), Element::Found(&[1]));
        assert_eq!(audio_level(&p, 9), Err(Malformed), "empty data is no level");
    }

    #[test]
    fn padding_and_the_reserved_id() {
        // one-byte: [pad, id1 L0 x, pad, pad] then id 15 stops before id 2.
        let mut raw = vec![
            0xbe, 0xde, 0, 2, 0x00, 0x10, 0x33, 0x00, 0xf0, 0x20, 0x44, 0x00,
        ];
        let p = {
            let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
            p.append(&mut raw);
            p
        };
        assert_eq!(find(&p, 1), Element::Found(&[0x33]));
        assert_eq!(find(&p, 2), Element::Absent, "id 15 ends the block");
    }

    #[test]
    fn lies_about_lengths_are_malformed_never_out_of_bounds() {
        let p = rtp_with(&block(&[(1, &[1, 2, 3, 4])]), 0);
        // The block claims more words than the packet holds.
        let mut long = p.clone();
        long[12 + 3] = 200;
        assert_eq!(find(&long, 1), Element::Malformed);
        // An element claims more than the block holds.
        let mut e = p.clone();
        e[12 + 4] = 0x1f;
        assert_eq!(find(&e, 1), Element::Malformed);
        assert_eq!(find(&e, 5), Element::Malformed);
        // No X bit: absent; X bit but no room for the block header: malformed.
        let mut plain = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2];
        assert_eq!(find(&plain, 1), Element::Absent);
        plain[0] |= 0x10;
        assert_eq!(find(&plain, 1), Element::Malformed);
        assert_eq!(find(&[], 1), Element::Malformed);
        // Another profile (RFC 3550 generic extension): nothing of ours in it.
        let mut other = p.clone();
        other[12] = 0x12;
        assert_eq!(find(&other, 1), Element::Absent);
        // Frame marking longer than its long form is malformed.
        let p = rtp_with(&block(&[(4, &[0x80, 0, 0, 0])]), 0);
        assert_eq!(frame_marking(&p, 4), Err(Malformed));
    }

    #[test]
    fn round_trips() {
        for b in 0..=255u8 {
            let fm = FrameMarking::parse(&[b]).unwrap();
            assert_eq!(fm.to_byte(), b);
            let al = AudioLevel::parse(&[b]).unwrap();
            assert_eq!(al.to_byte(), b);
        }
        assert!(write_block(&mut Vec::new(), &[(0, &[1])]).is_none());
    }

    #[test]
    fn every_truncation_and_byte_is_total() {
        let samples = [
            rtp_with(&block(&[(1, &[0x95]), (3, &[1, 2, 3])]), 2),
            rtp_with(&block(&[(20, &[7; 9]), (2, &[0x40])]), 0),
        ];
        for s in samples {
            for n in 0..=s.len() {
                fuzz_ext(&s[..n]);
            }
            for i in 0..s.len() {
                for b in [0u8, 0x0f, 0x10, 0xf0, 0xff] {
                    let mut m = s.clone();
                    m[i] = b;
                    fuzz_ext(&m);
                }
            }
        }
    }
}
