//! STUN Binding for ICE-lite latching (RFC 8489, RFC 8445 §2.5 and §7.2.2, RFC 7675).
//!
//! The forwarder is an ICE-lite agent: it never sends checks, it only answers the Binding
//! requests participants send to its media address, and a request that authenticates
//! with an endpoint's ICE pwd latches the request's source address to that endpoint.
//!
//! This module owns the wire format only: parsing and authenticating a Binding request
//! ([`BindingRequest`]) and writing the success response ([`write_binding_success`]),
//! both without allocating, plus the client side used by participants, tests and the
//! load generator ([`binding_request`], [`parse_binding_success`]), which may allocate.
//! It must not touch sockets, routing state or credentials storage: the shard looks the
//! pwd up by the ufrag from [`BindingRequest::ufrags`], calls
//! [`BindingRequest::verify_integrity`] and decides what to latch.
//!
//! Only authenticated requests get an answer, so someone who does not know an
//! endpoint's pwd cannot use the forwarder as a reflector. The answer (at most 76 bytes)
//! is also smaller than any request that can authenticate against our 16-character
//! ufrags (at least 80 bytes), so it is no amplifier either.
//!
//! Every offset read from the network is bounds-checked; malformed input is an
//! [`StunError`], never a panic (see [`fuzz_stun`] and the sweep tests below).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// Room for our success response: header (20) + XOR-MAPPED-ADDRESS for IPv6 (24) +
/// MESSAGE-INTEGRITY (24) + FINGERPRINT (8) = 76 bytes.
pub const MAX_RESPONSE: usize = 128;

const HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = 0x2112_A442_u32.to_be_bytes();
const FINGERPRINT_XOR: u32 = 0x5354_554E;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MI_LEN: usize = 20;
const MI_ATTR: usize = 4 + MI_LEN;
const FP_ATTR: usize = 4 + 4;
/// RFC 8489 §14.3: USERNAME "MUST contain a UTF-8-encoded sequence of fewer than 509 bytes".
const MAX_USERNAME: usize = 508;
/// The priority a check advertises for the peer-reflexive candidate it may create
/// (RFC 8445 §5.1.2.1: type preference 110, local preference 65535, component 1).
const PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;

/// Attribute types this module understands (RFC 8489 §18.3, RFC 8445 §16.1).
mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const FINGERPRINT: u16 = 0x8028;
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
struct Attrs {
    username: Option<(usize, usize)>,
    xor_mapped: Option<(usize, usize)>,
    priority: Option<u32>,
    use_candidate: bool,
    /// Offset of the MESSAGE-INTEGRITY attribute's header.
    integrity: Option<usize>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Checks the header, the attribute framing and FINGERPRINT. The message type is
/// checked before anything costly so that stray STUN is rejected cheaply.
fn scan(pkt: &[u8], want_type: u16, wrong_type: StunError) -> Result<Attrs, StunError> {
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
fn integrity_tag(msg: &[u8], mi_at: usize, key: &[u8]) -> Option<[u8; MI_LEN]> {
    let covered = msg.get(..mi_at)?;
    let adjusted = u16::try_from((mi_at + MI_ATTR).checked_sub(HEADER)?).ok()?;
    let mut mac = HmacSha1::new_from_slice(key).ok()?;
    mac.update(covered.get(..2)?);
    mac.update(&adjusted.to_be_bytes());
    mac.update(covered.get(4..)?);
    Some(mac.finalize().into_bytes().into())
}

/// Constant-time check of the MESSAGE-INTEGRITY attribute at `mi_at`.
fn integrity_ok(msg: &[u8], mi_at: usize, key: &[u8]) -> bool {
    let Some(received) = msg.get(mi_at + 4..mi_at + MI_ATTR) else {
        return false;
    };
    let Some(expected) = integrity_tag(msg, mi_at, key) else {
        return false;
    };
    expected[..].ct_eq(received).into()
}

/// A parsed, structurally valid Binding request borrowing the datagram. Its USERNAME is
/// not authenticated until [`BindingRequest::verify_integrity`] returns true.
#[derive(Clone, Copy)]
pub struct BindingRequest<'a> {
    pkt: &'a [u8],
    txid: [u8; 12],
    username: &'a [u8],
    integrity_at: usize,
    use_candidate: bool,
    priority: Option<u32>,
}

/// Redacted: the ufrags identify an endpoint and must not reach logs.
impl std::fmt::Debug for BindingRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingRequest")
            .field("len", &self.pkt.len())
            .field("use_candidate", &self.use_candidate)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<'a> BindingRequest<'a> {
    /// Checks the header, attribute framing (4-byte padding, bounds), FINGERPRINT (which
    /// must be the last attribute) and the presence of USERNAME and MESSAGE-INTEGRITY.
    /// Unknown comprehension-optional attributes are skipped; unknown
    /// comprehension-required ones before MESSAGE-INTEGRITY reject the request.
    pub fn parse(pkt: &'a [u8]) -> Result<Self, StunError> {
        let attrs = scan(pkt, BINDING_REQUEST, StunError::NotBindingRequest)?;
        let (u_start, u_end) = attrs.username.ok_or(StunError::MissingUsername)?;
        let integrity_at = attrs.integrity.ok_or(StunError::MissingIntegrity)?;
        let txid = pkt
            .get(8..HEADER)
            .and_then(|t| t.first_chunk::<12>())
            .ok_or(StunError::Truncated)?;
        Ok(Self {
            pkt,
            txid: *txid,
            username: pkt.get(u_start..u_end).ok_or(StunError::BadAttribute)?,
            integrity_at,
            use_candidate: attrs.use_candidate,
            priority: attrs.priority,
        })
    }

    pub fn transaction_id(&self) -> [u8; 12] {
        self.txid
    }

    /// USERNAME split at the first ':' into (local, remote): local is the forwarder
    /// endpoint's ufrag (what to look the pwd up by), remote the client's
    /// (RFC 8445 §7.2.2). Unauthenticated until `verify_integrity` passes.
    pub fn ufrags(&self) -> Result<(&'a str, &'a str), StunError> {
        let username = std::str::from_utf8(self.username).map_err(|_| StunError::BadUsername)?;
        match username.split_once(':') {
            Some((local, remote)) if !local.is_empty() && !remote.is_empty() => Ok((local, remote)),
            _ => Err(StunError::BadUsername),
        }
    }

    /// Verifies MESSAGE-INTEGRITY with `pwd`, the forwarder endpoint's ICE pwd (the
    /// short-term credential key), in constant time.
    pub fn verify_integrity(&self, pwd: &[u8]) -> bool {
        integrity_ok(self.pkt, self.integrity_at, pwd)
    }

    /// Whether the request nominates this pair (USE-CANDIDATE). Informational: an
    /// ICE-lite forwarder latches on any authenticated request.
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// The PRIORITY attribute, if present (informational).
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }
}

/// XOR-MAPPED-ADDRESS value (RFC 8489 §14.2); returns the buffer and its used length.
fn xor_mapped_value(txid: &[u8; 12], mapped: SocketAddr) -> ([u8; 20], usize) {
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

fn decode_xor_mapped(v: &[u8], txid: &[u8; 12]) -> Result<SocketAddr, StunError> {
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
fn write_message(
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

/// Writes a Binding success response to the request `txid`: XOR-MAPPED-ADDRESS for
/// `mapped` (the request's source), MESSAGE-INTEGRITY keyed by `pwd` (the same
/// endpoint pwd that authenticated the request) and FINGERPRINT. Returns its length
/// (64 bytes for IPv4, 76 for IPv6). Zero allocation.
pub fn write_binding_success(
    out: &mut [u8; MAX_RESPONSE],
    txid: &[u8; 12],
    mapped: SocketAddr,
    pwd: &[u8],
) -> usize {
    let (xma, xma_len) = xor_mapped_value(txid, mapped);
    let attrs = [(attr::XOR_MAPPED_ADDRESS, &xma[..xma_len])];
    write_message(out, BINDING_SUCCESS, txid, &attrs, pwd)
        // Invariant: at most 20 + 24 + 24 + 8 = 76 bytes, checked by a test.
        .expect("a Binding success response fits in MAX_RESPONSE")
}

/// Builds a Binding request as an ICE agent would send it to the forwarder: USERNAME
/// "{forwarder_ufrag}:{client_ufrag}", PRIORITY, ICE-CONTROLLING with a random
/// tiebreaker (a full agent facing an ICE-lite one is controlling), USE-CANDIDATE,
/// MESSAGE-INTEGRITY keyed by the forwarder endpoint's `pwd`, and FINGERPRINT.
///
/// # Panics
/// If the USERNAME would exceed 508 bytes: ufrags are 4 to 256 characters.
pub fn binding_request(
    txid: [u8; 12],
    forwarder_ufrag: &str,
    client_ufrag: &str,
    pwd: &[u8],
) -> Vec<u8> {
    let username = format!("{forwarder_ufrag}:{client_ufrag}");
    assert!(
        username.len() <= MAX_USERNAME,
        "ICE ufrags too long for USERNAME"
    );
    let tiebreaker = rand::random::<u64>().to_be_bytes();
    let priority = PRFLX_PRIORITY.to_be_bytes();
    let attrs = [
        (attr::USERNAME, username.as_bytes()),
        (attr::PRIORITY, &priority[..]),
        (attr::ICE_CONTROLLING, &tiebreaker[..]),
        (attr::USE_CANDIDATE, &[][..]),
    ];
    let mut out = vec![0u8; HEADER + 4 + MAX_USERNAME + 64 + MI_ATTR + FP_ATTR];
    let len = write_message(&mut out, BINDING_REQUEST, &txid, &attrs, pwd)
        // Invariant: the buffer was sized for the longest USERNAME allowed above.
        .expect("buffer sized for the request");
    out.truncate(len);
    out
}

/// Parses a Binding success response to the request `txid`: checks the transaction id,
/// FINGERPRINT and MESSAGE-INTEGRITY (keyed by `pwd`), and returns XOR-MAPPED-ADDRESS.
pub fn parse_binding_success(
    pkt: &[u8],
    txid: &[u8; 12],
    pwd: &[u8],
) -> Result<SocketAddr, StunError> {
    let attrs = scan(pkt, BINDING_SUCCESS, StunError::NotBindingSuccess)?;
    if pkt.get(8..HEADER) != Some(&txid[..]) {
        return Err(StunError::TransactionMismatch);
    }
    let integrity_at = attrs.integrity.ok_or(StunError::MissingIntegrity)?;
    if !integrity_ok(pkt, integrity_at, pwd) {
        return Err(StunError::BadIntegrity);
    }
    let (start, end) = attrs.xor_mapped.ok_or(StunError::MissingMappedAddress)?;
    let value = pkt.get(start..end).ok_or(StunError::BadMappedAddress)?;
    decode_xor_mapped(value, txid)
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
    }
    let txid = data
        .get(8..HEADER)
        .and_then(|t| t.first_chunk::<12>())
        .copied()
        .unwrap_or_default();
    let _ = parse_binding_success(data, &txid, b"VOkJxbRl1RmTxUk/WvJxBt");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 5769 §2.1-2.3 test vectors, byte for byte (SOFTWARE, PRIORITY, ICE-CONTROLLED,
    // a USERNAME padded with spaces). A transcription error would fail their
    // MESSAGE-INTEGRITY and FINGERPRINT checks.
    const RFC5769_PWD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const RFC5769_TXID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];
    const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
        802200105354554e207465737420636c69656e74\
        002400046e0001ff\
        80290008932ff9b151263b36\
        000600096576746a3a68367659202020\
        000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
        80280004e57a3bcf";
    const RFC5769_IPV4_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000080001a147e112a643\
        000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
        80280004c07d4c96";
    const RFC5769_IPV6_RESPONSE: &str = "010100482112a442b7e7a701bc34d686fa87dfae\
        8022000b7465737420766563746f7220\
        002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9\
        00080014a382954e4be67bf11784c97c8292c275bfe3ed41\
        80280004c8fb0b4c";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// Replaces the trailing FINGERPRINT after a test edits a message, fixing the header
    /// length: FINGERPRINT is unkeyed, so an attacker can always do this.
    fn refingerprint(msg: &mut Vec<u8>) {
        msg.truncate(msg.len() - FP_ATTR);
        let len = (msg.len() + FP_ATTR - HEADER) as u16;
        msg[2..4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32fast::hash(msg) ^ FINGERPRINT_XOR;
        msg.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
        msg.extend_from_slice(&4u16.to_be_bytes());
        msg.extend_from_slice(&crc.to_be_bytes());
    }

    fn build(msg_type: u16, attrs: &[(u16, &[u8])], key: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 2048];
        let len = write_message(&mut out, msg_type, &[7; 12], attrs, key).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn rfc5769_sample_request() {
        let pkt = unhex(RFC5769_REQUEST);
        let req = BindingRequest::parse(&pkt).unwrap();
        assert_eq!(req.transaction_id(), RFC5769_TXID);
        assert_eq!(req.ufrags(), Ok(("evtj", "h6vY")));
        assert_eq!(req.priority(), Some(0x6e00_01ff));
        assert!(!req.use_candidate());
        assert!(req.verify_integrity(RFC5769_PWD));
        assert!(!req.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
        assert!(!req.verify_integrity(b""));
    }

    #[test]
    fn rfc5769_sample_ipv4_response() {
        let pkt = unhex(RFC5769_IPV4_RESPONSE);
        let addr = parse_binding_success(&pkt, &RFC5769_TXID, RFC5769_PWD).unwrap();
        assert_eq!(addr, "192.0.2.1:32853".parse().unwrap());
        assert_eq!(
            parse_binding_success(&pkt, &RFC5769_TXID, b"wrong"),
            Err(StunError::BadIntegrity)
        );
        assert_eq!(
            parse_binding_success(&pkt, &[0; 12], RFC5769_PWD),
            Err(StunError::TransactionMismatch)
        );
        // A response is not a request.
        assert_eq!(
            BindingRequest::parse(&pkt).unwrap_err(),
            StunError::NotBindingRequest
        );
    }

    #[test]
    fn rfc5769_sample_ipv6_response() {
        let pkt = unhex(RFC5769_IPV6_RESPONSE);
        let addr = parse_binding_success(&pkt, &RFC5769_TXID, RFC5769_PWD).unwrap();
        assert_eq!(
            addr,
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        );
    }

    #[test]
    fn our_xor_mapped_address_matches_rfc5769() {
        for (vector, mapped) in [
            (RFC5769_IPV4_RESPONSE, "192.0.2.1:32853"),
            (
                RFC5769_IPV6_RESPONSE,
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            ),
        ] {
            let rfc = unhex(vector);
            let mut out = [0u8; MAX_RESPONSE];
            let n = write_binding_success(
                &mut out,
                &RFC5769_TXID,
                mapped.parse().unwrap(),
                RFC5769_PWD,
            );
            let (xma, len) = xor_mapped_value(&RFC5769_TXID, mapped.parse().unwrap());
            // The RFC's XOR-MAPPED-ADDRESS value follows its 16-byte SOFTWARE attribute.
            let rfc_value = &rfc[HEADER + 16 + 4..HEADER + 16 + 4 + len];
            assert_eq!(&xma[..len], rfc_value);
            // Ours carries it right after the header.
            assert_eq!(&out[HEADER + 4..HEADER + 4 + len], rfc_value);
            assert_eq!(n, HEADER + 4 + len + MI_ATTR + FP_ATTR);
        }
    }

    #[test]
    fn round_trip_v4_and_v6() {
        let (fu, cu, pwd) = (random_ufrag(), random_ufrag(), random_pwd());
        let txid: [u8; 12] = rand::random();
        let pkt = binding_request(txid, &fu, &cu, pwd.as_bytes());
        let req = BindingRequest::parse(&pkt).unwrap();
        assert_eq!(req.ufrags(), Ok((fu.as_str(), cu.as_str())));
        assert_eq!(req.transaction_id(), txid);
        assert!(req.use_candidate());
        assert_eq!(req.priority(), Some(PRFLX_PRIORITY));
        assert!(req.verify_integrity(pwd.as_bytes()));
        assert!(!req.verify_integrity(random_pwd().as_bytes()));
        for mapped in [
            "203.0.113.9:50000",
            "[2001:db8::42]:1",
            "[::ffff:198.51.100.7]:9",
        ] {
            let mapped: SocketAddr = mapped.parse().unwrap();
            let mut out = [0u8; MAX_RESPONSE];
            let n = write_binding_success(&mut out, &txid, mapped, pwd.as_bytes());
            assert!(n <= 76);
            let got = parse_binding_success(&out[..n], &txid, pwd.as_bytes()).unwrap();
            let canonical = SocketAddr::new(mapped.ip().to_canonical(), mapped.port());
            assert_eq!(got, canonical);
            assert_eq!(
                parse_binding_success(&out[..n], &txid, b"not the pwd"),
                Err(StunError::BadIntegrity)
            );
        }
    }

    #[test]
    fn response_never_exceeds_max_and_is_smaller_than_request() {
        let mut out = [0u8; MAX_RESPONSE];
        let v6 = "[2001:db8::1]:65535".parse().unwrap();
        let n = write_binding_success(&mut out, &[0xff; 12], v6, &[0xAA; 200]);
        assert_eq!(n, 76);
        // No amplification: the shortest request that can name one of our ufrags
        // (USERNAME "{16 chars}:{4 chars}", no optional attributes) is larger.
        let username = format!("{}:abcd", random_ufrag());
        let req = build(
            BINDING_REQUEST,
            &[(attr::USERNAME, username.as_bytes())],
            b"k",
        );
        assert!(BindingRequest::parse(&req).is_ok());
        assert!(req.len() > n, "{} <= {n}", req.len());
    }

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
    fn byte_flips_with_forged_fingerprint_fail_integrity() {
        let pwd = b"a-pwd-of-twenty-four-chr";
        let pkt = binding_request([9; 12], "fwd0", "cli0", pwd);
        let fp_at = pkt.len() - FP_ATTR;
        // Everything before FINGERPRINT except the length field (which refingerprint
        // rewrites) is covered by MESSAGE-INTEGRITY.
        for i in (0..fp_at).filter(|i| !(2..4).contains(i)) {
            let mut forged = pkt.clone();
            forged[i] ^= 0x40;
            refingerprint(&mut forged);
            let ok = BindingRequest::parse(&forged).is_ok_and(|r| r.verify_integrity(pwd));
            assert!(!ok, "byte {i} forged past integrity");
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
    fn header_errors() {
        let good = binding_request([1; 12], "fwd", "cli", b"pwd");
        let mut rtp = good.clone();
        rtp[0] = 0x80;
        assert_eq!(BindingRequest::parse(&rtp).unwrap_err(), StunError::NotStun);
        let mut cookie = good.clone();
        cookie[5] ^= 1;
        assert_eq!(
            BindingRequest::parse(&cookie).unwrap_err(),
            StunError::NotStun
        );
        let mut indication = good.clone();
        indication[1] = 0x11;
        assert_eq!(
            BindingRequest::parse(&indication).unwrap_err(),
            StunError::NotBindingRequest
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 4]);
        assert_eq!(
            BindingRequest::parse(&trailing).unwrap_err(),
            StunError::BadLength
        );
        let mut odd = good.clone();
        odd[3] += 2;
        assert_eq!(
            BindingRequest::parse(&odd).unwrap_err(),
            StunError::BadLength
        );
        let mut long = good;
        long[3] += 4;
        assert_eq!(
            BindingRequest::parse(&long).unwrap_err(),
            StunError::Truncated
        );
    }

    #[test]
    fn attribute_rules() {
        let key = b"k";
        let u = (attr::USERNAME, &b"fwd:cli"[..]);
        // Unknown comprehension-optional attributes are skipped.
        let pkt = build(BINDING_REQUEST, &[(0xC057, &[1, 2, 3][..]), u], key);
        let req = BindingRequest::parse(&pkt).unwrap();
        assert!(req.verify_integrity(key));
        // Unknown comprehension-required ones are not.
        let pkt = build(BINDING_REQUEST, &[(0x0123, &[][..]), u], key);
        assert_eq!(
            BindingRequest::parse(&pkt).unwrap_err(),
            StunError::UnknownRequiredAttribute
        );
        let pkt = build(BINDING_REQUEST, &[(attr::PRIORITY, &[1, 2, 3][..]), u], key);
        assert_eq!(
            BindingRequest::parse(&pkt).unwrap_err(),
            StunError::BadAttribute
        );
        let pkt = build(BINDING_REQUEST, &[], key);
        assert_eq!(
            BindingRequest::parse(&pkt).unwrap_err(),
            StunError::MissingUsername
        );
        let long = vec![b'a'; MAX_USERNAME + 1];
        let pkt = build(BINDING_REQUEST, &[(attr::USERNAME, &long[..])], key);
        assert_eq!(
            BindingRequest::parse(&pkt).unwrap_err(),
            StunError::BadUsername
        );
        for bad in [&b"nocolon"[..], b":cli", b"fwd:", b"\xff:\xfe"] {
            let pkt = build(BINDING_REQUEST, &[(attr::USERNAME, bad)], key);
            let req = BindingRequest::parse(&pkt).unwrap();
            assert_eq!(req.ufrags().unwrap_err(), StunError::BadUsername);
        }
        // Only the first ':' splits.
        let pkt = build(BINDING_REQUEST, &[(attr::USERNAME, b"a:b:c")], key);
        assert_eq!(
            BindingRequest::parse(&pkt).unwrap().ufrags(),
            Ok(("a", "b:c"))
        );
    }

    #[test]
    fn integrity_and_fingerprint_placement() {
        let key = b"k";
        let pkt = build(BINDING_REQUEST, &[(attr::USERNAME, b"f:c")], key);
        // No MESSAGE-INTEGRITY: strip it and re-fingerprint.
        let mut no_mi = pkt[..pkt.len() - FP_ATTR - MI_ATTR].to_vec();
        no_mi.extend_from_slice(&[0; FP_ATTR]);
        refingerprint(&mut no_mi);
        assert_eq!(
            BindingRequest::parse(&no_mi).unwrap_err(),
            StunError::MissingIntegrity
        );
        // No FINGERPRINT.
        let mut no_fp = pkt[..pkt.len() - FP_ATTR].to_vec();
        let len = (no_fp.len() - HEADER) as u16;
        no_fp[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            BindingRequest::parse(&no_fp).unwrap_err(),
            StunError::MissingFingerprint
        );
        // Wrong FINGERPRINT value.
        let mut bad_fp = pkt.clone();
        *bad_fp.last_mut().unwrap() ^= 1;
        assert_eq!(
            BindingRequest::parse(&bad_fp).unwrap_err(),
            StunError::BadFingerprint
        );
        // FINGERPRINT not last.
        let mut not_last = pkt.clone();
        not_last.extend_from_slice(&[0x80, 0x22, 0, 0]);
        let len = (not_last.len() - HEADER) as u16;
        not_last[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            BindingRequest::parse(&not_last).unwrap_err(),
            StunError::FingerprintNotLast
        );
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let key = b"k";
        let pkt = build(BINDING_REQUEST, &[(attr::USERNAME, b"f:c")], key);
        // Insert USE-CANDIDATE and an unknown required attribute between
        // MESSAGE-INTEGRITY and FINGERPRINT: they are not authenticated, so they must
        // neither count nor break the request.
        let mut tampered = pkt[..pkt.len() - FP_ATTR].to_vec();
        tampered.extend_from_slice(&attr::USE_CANDIDATE.to_be_bytes());
        tampered.extend_from_slice(&[0, 0]);
        tampered.extend_from_slice(&[0x01, 0x23, 0, 0]);
        tampered.extend_from_slice(&attr::USERNAME.to_be_bytes());
        tampered.extend_from_slice(&[0, 4]);
        tampered.extend_from_slice(b"x:yz");
        tampered.extend_from_slice(&[0; FP_ATTR]);
        refingerprint(&mut tampered);
        let req = BindingRequest::parse(&tampered).unwrap();
        assert!(!req.use_candidate());
        assert_eq!(req.ufrags(), Ok(("f", "c")));
        assert!(req.verify_integrity(key));
    }

    #[test]
    fn success_response_errors() {
        let txid = [5; 12];
        let mut out = [0u8; MAX_RESPONSE];
        let n = write_binding_success(&mut out, &txid, "192.0.2.1:1".parse().unwrap(), b"k");
        let mut err_resp = out[..n].to_vec();
        err_resp[1] = 0x11;
        assert_eq!(
            parse_binding_success(&err_resp, &txid, b"k"),
            Err(StunError::NotBindingSuccess)
        );
        let no_xma = {
            let mut v = vec![0u8; 256];
            let len = write_message(&mut v, BINDING_SUCCESS, &txid, &[], b"k").unwrap();
            v.truncate(len);
            v
        };
        assert_eq!(
            parse_binding_success(&no_xma, &txid, b"k"),
            Err(StunError::MissingMappedAddress)
        );
        let bad_family = {
            let mut v = vec![0u8; 256];
            let value = [0, 0x03, 0, 1, 0, 0, 0, 0];
            let attrs = [(attr::XOR_MAPPED_ADDRESS, &value[..])];
            let len = write_message(&mut v, BINDING_SUCCESS, &txid, &attrs, b"k").unwrap();
            v.truncate(len);
            v
        };
        assert_eq!(
            parse_binding_success(&bad_family, &txid, b"k"),
            Err(StunError::BadMappedAddress)
        );
    }

    #[test]
    fn debug_output_redacts_the_username() {
        let pkt = binding_request([1; 12], "secretfwd", "secretcli", b"pwd");
        let shown = format!("{:?}", BindingRequest::parse(&pkt).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
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

        #[test]
        fn round_trip_any_credentials(
            txid in any::<[u8; 12]>(),
            fu in "[A-Za-z0-9+/]{4,32}",
            cu in "[A-Za-z0-9+/]{4,32}",
            pwd in proptest::collection::vec(any::<u8>(), 0..80),
            ip in any::<[u8; 16]>(),
            port in any::<u16>(),
        ) {
            let pkt = binding_request(txid, &fu, &cu, &pwd);
            let req = BindingRequest::parse(&pkt).unwrap();
            prop_assert_eq!(req.ufrags(), Ok((fu.as_str(), cu.as_str())));
            prop_assert!(req.verify_integrity(&pwd));
            let mapped = SocketAddr::new(Ipv6Addr::from(ip).into(), port);
            let mut out = [0u8; MAX_RESPONSE];
            let n = write_binding_success(&mut out, &req.transaction_id(), mapped, &pwd);
            let got = parse_binding_success(&out[..n], &txid, &pwd).unwrap();
            prop_assert_eq!(got, SocketAddr::new(mapped.ip().to_canonical(), port));
        }
    }
}
