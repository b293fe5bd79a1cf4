//! STUN for ICE-lite latching (RFC 8489, RFC 8445 §2.5 and §7.2.2, RFC 7675): the shared
//! codec, with the forwarder's half in [`server`] and the participant's in [`client`].
//!
//! This module owns the wire format both halves share: header and attribute framing
//! (`scan`), MESSAGE-INTEGRITY and FINGERPRINT, XOR-MAPPED-ADDRESS, the message writer,
//! and ICE credentials. [`server`] parses and authenticates the Binding requests
//! participants send and writes the answers, without allocating (it runs per packet);
//! [`client`] builds requests and checks answers for participants, tests and the load
//! generator, and may allocate. Nothing here touches sockets, routing state or the
//! storage of credentials: the router looks the pwd up by the ufrag and decides what to
//! latch.
//!
//! Only authenticated requests get an answer, so someone who does not know an
//! endpoint's pwd cannot use the forwarder as a reflector. The answer (at most 76 bytes)
//! is also smaller than any request that can authenticate against our 16-character
//! ufrags (at least 80 bytes), so it is no amplifier either; the forwarder's own check to
//! an address it has not proven yet ([`server::write_check`]) is held by the router to
//! three times what that address sent.
//!
//! Every offset read from the network is bounds-checked; malformed input is an
//! [`StunError`], never a panic (see [`fuzz_stun`] and the sweep tests).

pub mod client;
pub mod server;

pub use client::{answer_check, binding_request, parse_binding_success};
pub use server::{BindingRequest, BindingResponse, MAX_CHECK, write_binding_success, write_check};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// Room for our success response: header (20) + XOR-MAPPED-ADDRESS for IPv6 (24) +
/// MESSAGE-INTEGRITY (24) + FINGERPRINT (8) = 76 bytes.
pub const MAX_RESPONSE: usize = 128;

pub(crate) const HEADER: usize = 20;
pub(crate) const MAGIC_COOKIE: [u8; 4] = 0x2112_A442_u32.to_be_bytes();
pub(crate) const FINGERPRINT_XOR: u32 = 0x5354_554E;
pub(crate) const BINDING_REQUEST: u16 = 0x0001;
pub(crate) const BINDING_SUCCESS: u16 = 0x0101;
pub(crate) const MI_LEN: usize = 20;
pub(crate) const MI_ATTR: usize = 4 + MI_LEN;
pub(crate) const FP_ATTR: usize = 4 + 4;
/// RFC 8489 §14.3: USERNAME "MUST contain a UTF-8-encoded sequence of fewer than 509 bytes".
pub(crate) const MAX_USERNAME: usize = 508;

/// Attribute types this module understands (RFC 8489 §18.3, RFC 8445 §16.1).
pub(crate) mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
    /// Types below this are comprehension-required.
    pub const FIRST_OPTIONAL: u16 = 0x8000;
}

/// Why a datagram was not accepted. Variants carry no data so they can serve directly as
/// drop-reason counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than the STUN header or its declared length")]
    Truncated,
    #[error("not STUN: top bits set or wrong magic cookie")]
    NotStun,
    #[error("declared length not a multiple of 4 or not the datagram's length")]
    BadLength,
    #[error("not a Binding request")]
    NotBindingRequest,
    #[error("not a Binding success response")]
    NotBindingSuccess,
    #[error("attribute overruns the message or has the wrong size")]
    BadAttribute,
    #[error("unknown comprehension-required attribute")]
    UnknownRequiredAttribute,
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    #[error("no USERNAME")]
    MissingUsername,
    #[error("no MESSAGE-INTEGRITY")]
    MissingIntegrity,
    #[error("no FINGERPRINT")]
    MissingFingerprint,
    #[error("FINGERPRINT mismatch")]
    BadFingerprint,
    #[error("USERNAME is not UTF-8 \"local:remote\" within 508 bytes")]
    BadUsername,
    #[error("MESSAGE-INTEGRITY mismatch")]
    BadIntegrity,
    #[error("transaction id does not match the request")]
    TransactionMismatch,
    #[error("no XOR-MAPPED-ADDRESS")]
    MissingMappedAddress,
    #[error("malformed XOR-MAPPED-ADDRESS")]
    BadMappedAddress,
}

/// Offsets of the attributes found before MESSAGE-INTEGRITY. Anything after it, except
/// FINGERPRINT, is ignored (RFC 8489 §14.5): it is not covered by the integrity check.
#[derive(Default, Clone, Copy)]
pub(crate) struct Attrs {
    pub(crate) username: Option<(usize, usize)>,
    pub(crate) xor_mapped: Option<(usize, usize)>,
    pub(crate) priority: Option<u32>,
    pub(crate) use_candidate: bool,
    /// ICE-CONTROLLED was present (before MESSAGE-INTEGRITY).
    pub(crate) controlled: bool,
    /// Offset of the MESSAGE-INTEGRITY attribute's header.
    pub(crate) integrity: Option<usize>,
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Checks the header, the attribute framing and FINGERPRINT. The message type is
/// checked before anything costly so that stray STUN is rejected cheaply.
pub(crate) fn scan(pkt: &[u8], want_type: u16, wrong_type: StunError) -> Result<Attrs, StunError> {
    let Some(header) = pkt.first_chunk::<HEADER>() else {
        return Err(StunError::Truncated);
    };
    let msg_type = u16::from_be_bytes([header[0], header[1]]);
    let body_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if msg_type & 0xC000 != 0 || header[4..8] != MAGIC_COOKIE {
        return Err(StunError::NotStun);
    }
    if msg_type != want_type {
        return Err(wrong_type);
    }
    if body_len % 4 != 0 {
        return Err(StunError::BadLength);
    }
    match (HEADER + body_len).cmp(&pkt.len()) {
        std::cmp::Ordering::Greater => return Err(StunError::Truncated),
        std::cmp::Ordering::Less => return Err(StunError::BadLength),
        std::cmp::Ordering::Equal => {}
    }

    let mut attrs = Attrs::default();
    let mut fingerprint_at = None;
    let mut off = HEADER;
    while off < pkt.len() {
        if fingerprint_at.is_some() {
            return Err(StunError::FingerprintNotLast);
        }
        let (Some(typ), Some(len)) = (be16(pkt, off), be16(pkt, off + 2)) else {
            return Err(StunError::BadAttribute);
        };
        let len = usize::from(len);
        let start = off + 4;
        let end = start + len;
        let next = start + len.next_multiple_of(4);
        if next > pkt.len() {
            return Err(StunError::BadAttribute);
        }
        if typ == attr::FINGERPRINT {
            if len != 4 {
                return Err(StunError::BadAttribute);
            }
            fingerprint_at = Some(off);
        } else if attrs.integrity.is_none() {
            match typ {
                attr::USERNAME => {
                    if len > MAX_USERNAME {
                        return Err(StunError::BadUsername);
                    }
                    attrs.username.get_or_insert((start, end));
                }
                attr::MESSAGE_INTEGRITY => {
                    if len != MI_LEN {
                        return Err(StunError::BadAttribute);
                    }
                    attrs.integrity = Some(off);
                }
                attr::PRIORITY => {
                    let v = pkt.get(start..end).and_then(|v| v.first_chunk::<4>());
                    match v {
                        Some(v) if len == 4 => {
                            attrs.priority.get_or_insert(u32::from_be_bytes(*v));
                        }
                        _ => return Err(StunError::BadAttribute),
                    }
                }
                attr::ICE_CONTROLLED => attrs.controlled = true,
                attr::USE_CANDIDATE => {
                    if len != 0 {
                        return Err(StunError::BadAttribute);
                    }
                    attrs.use_candidate = true;
                }
                attr::XOR_MAPPED_ADDRESS => {
                    attrs.xor_mapped.get_or_insert((start, end));
                }
                attr::MAPPED_ADDRESS | attr::ERROR_CODE => {}
                t if t < attr::FIRST_OPTIONAL => return Err(StunError::UnknownRequiredAttribute),
                _ => {}
            }
        }
        off = next;
    }

    let Some(fp_at) = fingerprint_at else {
        return Err(StunError::MissingFingerprint);
    };
    // The loop above proved fp_at + 8 == pkt.len().
    let (covered, fp_attr) = pkt.split_at(fp_at);
    let expected = (crc32fast::hash(covered) ^ FINGERPRINT_XOR).to_be_bytes();
    if fp_attr.get(4..) != Some(&expected[..]) {
        return Err(StunError::BadFingerprint);
    }
    Ok(attrs)
}

/// HMAC-SHA1 over `msg[..mi_at]` with the header's length field replaced by the length
/// up to the end of the MESSAGE-INTEGRITY attribute (RFC 8489 §14.5). Zero allocation.
pub(crate) fn integrity_tag(msg: &[u8], mi_at: usize, key: &[u8]) -> Option<[u8; MI_LEN]> {
    let covered = msg.get(..mi_at)?;
    let adjusted = u16::try_from((mi_at + MI_ATTR).checked_sub(HEADER)?).ok()?;
    let mut mac = HmacSha1::new_from_slice(key).ok()?;
    mac.update(covered.get(..2)?);
    mac.update(&adjusted.to_be_bytes());
    mac.update(covered.get(4..)?);
    Some(mac.finalize().into_bytes().into())
}

/// Constant-time check of the MESSAGE-INTEGRITY attribute at `mi_at`.
pub(crate) fn integrity_ok(msg: &[u8], mi_at: usize, key: &[u8]) -> bool {
    let Some(received) = msg.get(mi_at + 4..mi_at + MI_ATTR) else {
        return false;
    };
    let Some(expected) = integrity_tag(msg, mi_at, key) else {
        return false;
    };
    expected[..].ct_eq(received).into()
}

/// XOR-MAPPED-ADDRESS value (RFC 8489 §14.2); returns the buffer and its used length.
pub(crate) fn xor_mapped_value(txid: &[u8; 12], mapped: SocketAddr) -> ([u8; 20], usize) {
    let mut v = [0u8; 20];
    let port = mapped.port() ^ 0x2112;
    v[2..4].copy_from_slice(&port.to_be_bytes());
    // A v4-mapped IPv6 source is an IPv4 peer seen through a dual-stack socket; it
    // expects to learn its IPv4 address.
    match mapped.ip().to_canonical() {
        IpAddr::V4(ip) => {
            v[1] = 0x01;
            for (i, b) in ip.octets().iter().enumerate() {
                v[4 + i] = b ^ MAGIC_COOKIE[i];
            }
            (v, 8)
        }
        IpAddr::V6(ip) => {
            v[1] = 0x02;
            for (i, b) in ip.octets().iter().enumerate() {
                let mask = if i < 4 { MAGIC_COOKIE[i] } else { txid[i - 4] };
                v[4 + i] = b ^ mask;
            }
            (v, 20)
        }
    }
}

pub(crate) fn decode_xor_mapped(v: &[u8], txid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let port = be16(v, 2).ok_or(StunError::BadMappedAddress)? ^ 0x2112;
    match (v.get(1), v.len()) {
        (Some(0x01), 8) => {
            let mut ip = [0u8; 4];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = v[4 + i] ^ MAGIC_COOKIE[i];
            }
            Ok(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        (Some(0x02), 20) => {
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                let mask = if i < 4 { MAGIC_COOKIE[i] } else { txid[i - 4] };
                *b = v[4 + i] ^ mask;
            }
            Ok(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => Err(StunError::BadMappedAddress),
    }
}

/// Writes a whole message into `out`: header, `attrs` (zero-padded), then
/// MESSAGE-INTEGRITY keyed by `key` and FINGERPRINT. Returns its length, or `None` if it
/// does not fit in `out` or in a STUN length field.
pub(crate) fn write_message(
    out: &mut [u8],
    msg_type: u16,
    txid: &[u8; 12],
    attrs: &[(u16, &[u8])],
    key: &[u8],
) -> Option<usize> {
    let body: usize = attrs
        .iter()
        .map(|(_, v)| 4 + v.len().next_multiple_of(4))
        .sum();
    let total = HEADER + body + MI_ATTR + FP_ATTR;
    let out = out.get_mut(..total)?;
    let set_length = |out: &mut [u8], upto: usize| -> Option<()> {
        let len = u16::try_from(upto - HEADER).ok()?;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        Some(())
    };
    out.fill(0);
    out[0..2].copy_from_slice(&msg_type.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE);
    out[8..HEADER].copy_from_slice(txid);
    let mut pos = HEADER;
    for (typ, value) in attrs {
        out[pos..pos + 2].copy_from_slice(&typ.to_be_bytes());
        out[pos + 2..pos + 4].copy_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
        out[pos + 4..pos + 4 + value.len()].copy_from_slice(value);
        pos += 4 + value.len().next_multiple_of(4);
    }
    // The length field covers MESSAGE-INTEGRITY while it is computed, then FINGERPRINT.
    set_length(out, pos + MI_ATTR)?;
    let tag = integrity_tag(out, pos, key)?;
    out[pos..pos + 2].copy_from_slice(&attr::MESSAGE_INTEGRITY.to_be_bytes());
    out[pos + 2..pos + 4].copy_from_slice(&(MI_LEN as u16).to_be_bytes());
    out[pos + 4..pos + MI_ATTR].copy_from_slice(&tag);
    pos += MI_ATTR;
    set_length(out, pos + FP_ATTR)?;
    let crc = crc32fast::hash(&out[..pos]) ^ FINGERPRINT_XOR;
    out[pos..pos + 2].copy_from_slice(&attr::FINGERPRINT.to_be_bytes());
    out[pos + 2..pos + 4].copy_from_slice(&4u16.to_be_bytes());
    out[pos + 4..pos + FP_ATTR].copy_from_slice(&crc.to_be_bytes());
    Some(pos + FP_ATTR)
}

/// The ICE character set (RFC 8839 `ice-char`): 64 symbols, so a random byte masked to
/// 6 bits picks one without bias.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_ice_string(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::fill(&mut bytes[..]);
    bytes
        .iter()
        .map(|b| char::from(ICE_CHARS[usize::from(b & 63)]))
        .collect()
}

/// A random ICE ufrag: 16 characters (96 bits; RFC 8445 asks for at least 24).
pub fn random_ufrag() -> String {
    random_ice_string(16)
}

/// A random ICE pwd: 24 characters (144 bits; RFC 8445 asks for at least 128). It is the
/// MESSAGE-INTEGRITY key, so it comes from the thread's CSPRNG.
pub fn random_pwd() -> String {
    random_ice_string(24)
}

#[cfg(any(test, feature = "fuzzing"))]
/// Fuzz entry point: runs every server-side step, and the client-side parser, on
/// arbitrary bytes. Must never panic.
pub fn fuzz_stun(data: &[u8]) {
    if let Ok(req) = BindingRequest::parse(data) {
        let _ = req.ufrags();
        let _ = req.use_candidate();
        let _ = req.priority();
        let _ = req.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt");
        let mut out = [0u8; MAX_RESPONSE];
        let mapped = SocketAddr::from(([192, 0, 2, 1], 32853));
        let _ = write_binding_success(&mut out, &req.transaction_id(), mapped, b"pwd");
        if let Ok((local, remote)) = req.ufrags() {
            let mut check = [0u8; MAX_CHECK];
            let n = write_check(&mut check, &req.transaction_id(), remote, local, b"k", 1);
            let n = n.expect("the ufrags of a request that parsed fit a check");
            let _ = answer_check(&check[..n], mapped, local, remote, b"k");
        }
        let _ = answer_check(data, mapped, "fwd", "cli", b"VOkJxbRl1RmTxUk/WvJxBt");
    }
    let _ = server::is_success_response(data);
    if let Ok(resp) = BindingResponse::parse(data) {
        let _ = resp.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt");
    }
    let txid = data
        .get(8..HEADER)
        .and_then(|t| t.first_chunk::<12>())
        .copied()
        .unwrap_or_default();
    let _ = parse_binding_success(data, &txid, b"VOkJxbRl1RmTxUk/WvJxBt");
}

#[cfg(test)]
pub(crate) mod testutil {
    //! RFC 5769 vectors and message surgery shared by both halves' tests.
    use super::*;

    // RFC 5769 §2.1-2.3 test vectors, byte for byte (SOFTWARE, PRIORITY, ICE-CONTROLLED,
    // a USERNAME padded with spaces). A transcription error would fail their
    // MESSAGE-INTEGRITY and FINGERPRINT checks.
    pub(crate) const RFC5769_PWD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    pub(crate) const RFC5769_TXID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];
    pub(crate) const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
        802200105354554e207465737420636c69656e74\
        002400046e0001ff\
        80290008932ff9b151263b36\
        000600096576746a3a68367659202020\
        000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
        80280004e57a3bcf";
    pub(crate) const RFC5769_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000080001a147e112a643\
        000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
        80280004c07d4c96";
    pub(crate) const RFC5769_IPV6_RESPONSE: &str = "010100482112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9\
        00080014a382954e4be67bf11784c97c8292c275bfe3ed41\
        80280004c8fb0b4c";

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// Replaces the trailing FINGERPRINT after a test edits a message, fixing the header
    /// length: FINGERPRINT is unkeyed, so an attacker can always do this.
    pub(crate) fn refingerprint(msg: &mut Vec<u8>) {
        msg.truncate(msg.len() - FP_ATTR);
        let len = (msg.len() + FP_ATTR - HEADER) as u16;
        msg[2..4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32fast::hash(msg) ^ FINGERPRINT_XOR;
        msg.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
        msg.extend_from_slice(&4u16.to_be_bytes());
        msg.extend_from_slice(&crc.to_be_bytes());
    }

    pub(crate) fn build(msg_type: u16, attrs: &[(u16, &[u8])], key: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 2048];
        let len = write_message(&mut out, msg_type, &[7; 12], attrs, key).unwrap();
        out.truncate(len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::testutil::*;
    use proptest::prelude::*;
    #[test]
    fn every_byte_flip_is_rejected() {
        let pwd = b"a-pwd-of-twenty-four-chr";
        let pkt = binding_request([3; 12], "forwarderufrag00", "clientufrag00000", pwd);
        let mut flipped = pkt.clone();
        for i in 0..pkt.len() {
            for x in 1..=255u8 {
                flipped[i] = pkt[i] ^ x;
                let ok = BindingRequest::parse(&flipped).is_ok_and(|r| r.verify_integrity(pwd));
                assert!(!ok, "byte {i} ^ {x:#04x} accepted");
            }
            flipped[i] = pkt[i];
        }
        let resp = unhex(RFC5769_IPV4_RESPONSE);
        let mut flipped = resp.clone();
        for i in 0..resp.len() {
            flipped[i] ^= 0x01;
            assert!(parse_binding_success(&flipped, &RFC5769_TXID, RFC5769_PWD).is_err());
            flipped[i] = resp[i];
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for vector in [
            binding_request([1; 12], "f", "c", b"p"),
            unhex(RFC5769_REQUEST),
            unhex(RFC5769_IPV6_RESPONSE),
        ] {
            for n in 0..vector.len() {
                assert!(BindingRequest::parse(&vector[..n]).is_err(), "prefix {n}");
                assert!(parse_binding_success(&vector[..n], &RFC5769_TXID, RFC5769_PWD).is_err());
                fuzz_stun(&vector[..n]);
            }
        }
        assert_eq!(
            BindingRequest::parse(&[]).unwrap_err(),
            StunError::Truncated
        );
    }

    #[test]
    fn credentials_use_the_ice_alphabet() {
        let (u, p) = (random_ufrag(), random_pwd());
        assert_eq!(u.len(), 16);
        assert_eq!(p.len(), 24);
        assert!(u.bytes().chain(p.bytes()).all(|b| ICE_CHARS.contains(&b)));
        assert_ne!(random_pwd(), p);
        assert_ne!(random_ufrag(), u);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..160)) {
            fuzz_stun(&data);
        }

        /// Random attributes behind a valid header and a correct FINGERPRINT, so the
        /// attribute walker and integrity check see hostile framing, not just a bad cookie.
        #[test]
        fn random_attributes_never_panic_nor_authenticate(
            body in proptest::collection::vec(any::<u8>(), 0..30).prop_map(|mut b| {
                b.resize(b.len().next_multiple_of(4), 0);
                b
            }),
            msg_type in prop_oneof![Just(BINDING_REQUEST), Just(BINDING_SUCCESS), any::<u16>()],
        ) {
            let mut pkt = Vec::new();
            pkt.extend_from_slice(&msg_type.to_be_bytes());
            pkt.extend_from_slice(&[0, 0]);
            pkt.extend_from_slice(&MAGIC_COOKIE);
            pkt.extend_from_slice(&[7; 12]);
            pkt.extend_from_slice(&body);
            pkt.extend_from_slice(&[0; FP_ATTR]);
            refingerprint(&mut pkt);
            fuzz_stun(&pkt);
            if let Ok(req) = BindingRequest::parse(&pkt) {
                prop_assert!(!req.verify_integrity(b"k"));
            }
            prop_assert!(parse_binding_success(&pkt, &[7; 12], b"k").is_err());
        }

    }
}
