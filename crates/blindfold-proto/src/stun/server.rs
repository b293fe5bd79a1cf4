//! The forwarder's half of STUN: parsing and authenticating the Binding requests
//! participants send ([`BindingRequest`]) and writing the success response
//! ([`write_binding_success`]); writing the forwarder's own return-path check to an
//! address it has not proven yet ([`write_check`]) and authenticating the answer
//! ([`BindingResponse`]).
//!
//! Owns the per-packet STUN work, which must not allocate. Must not decide anything:
//! which pwd to verify with and what to latch are the router's.

use std::net::SocketAddr;

use super::{
    BINDING_REQUEST, BINDING_SUCCESS, FP_ATTR, HEADER, MAX_RESPONSE, MAX_USERNAME, MI_ATTR,
    StunError, attr, integrity_ok, scan, write_message, xor_mapped_value,
};

/// A parsed, structurally valid Binding request borrowing the datagram. Its USERNAME is
/// not authenticated until [`BindingRequest::verify_integrity`] returns true.
#[derive(Clone, Copy)]
pub struct BindingRequest<'a> {
    pkt: &'a [u8],
    txid: [u8; 12],
    username: &'a [u8],
    integrity_at: usize,
    use_candidate: bool,
    controlled: bool,
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
            controlled: attrs.controlled,
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

    /// Whether the request nominates this pair (USE-CANDIDATE): the controlling agent's
    /// choice of the pair media goes to (RFC 8445 §7.3.1.5).
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// Whether the sender claims the controlled role (ICE-CONTROLLED). The forwarder is
    /// ICE-lite and so always controlled itself (RFC 8445 §6.1.1): such a request comes
    /// from no agent it serves, but possibly from a forwarder, itself included, whose
    /// return-path check was reflected at it.
    pub fn controlled(&self) -> bool {
        self.controlled
    }

    /// The PRIORITY attribute, if present (informational).
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }
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

/// Room for the forwarder's own check: header, USERNAME of two ufrags (at most 508
/// bytes), PRIORITY, ICE-CONTROLLED, MESSAGE-INTEGRITY and FINGERPRINT.
pub const MAX_CHECK: usize = HEADER + 4 + MAX_USERNAME + 8 + 12 + MI_ATTR + FP_ATTR;

/// The priority the forwarder's host candidate advertises (RFC 8445 §5.1.2.1: type
/// preference 126, local preference 65535, component 1).
const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;

/// Writes the forwarder's return-path check to an address an endpoint's agent checked
/// from (RFC 7675 consent, sent before any media goes there): USERNAME
/// "{agent_ufrag}:{forwarder_ufrag}" (RFC 8445 §7.2.2, seen from the agent), PRIORITY,
/// ICE-CONTROLLED with `tiebreaker` (an ICE-lite agent is controlled),
/// MESSAGE-INTEGRITY keyed by the endpoint's pwd, which only the agent and the forwarder
/// hold, and FINGERPRINT. `txid` must be unpredictable: only a receiver at the address
/// sees it, which is the proof. Returns its length, or `None` when the USERNAME would not
/// fit (never for ufrags taken from a request that parsed). Zero allocation.
pub fn write_check(
    out: &mut [u8; MAX_CHECK],
    txid: &[u8; 12],
    agent_ufrag: &str,
    forwarder_ufrag: &str,
    pwd: &[u8],
    tiebreaker: u64,
) -> Option<usize> {
    let mut username = [0u8; MAX_USERNAME];
    let (a, f) = (agent_ufrag.as_bytes(), forwarder_ufrag.as_bytes());
    let len = a.len() + 1 + f.len();
    let u = username.get_mut(..len)?;
    u[..a.len()].copy_from_slice(a);
    u[a.len()] = b':';
    u[a.len() + 1..].copy_from_slice(f);
    let priority = HOST_PRIORITY.to_be_bytes();
    let tiebreaker = tiebreaker.to_be_bytes();
    let attrs = [
        (attr::USERNAME, &u[..]),
        (attr::PRIORITY, &priority[..]),
        (attr::ICE_CONTROLLED, &tiebreaker[..]),
    ];
    write_message(out, BINDING_REQUEST, txid, &attrs, pwd)
}

/// Whether `pkt` claims to be a Binding success response (the answer to one of the
/// forwarder's checks), from its first two bytes only.
#[inline]
pub fn is_success_response(pkt: &[u8]) -> bool {
    pkt.get(..2) == Some(&BINDING_SUCCESS.to_be_bytes()[..])
}

/// A parsed, structurally valid Binding success response borrowing the datagram: the
/// answer to one of the forwarder's checks. Unauthenticated until
/// [`BindingResponse::verify_integrity`] returns true.
#[derive(Clone, Copy)]
pub struct BindingResponse<'a> {
    pkt: &'a [u8],
    txid: [u8; 12],
    integrity_at: usize,
}

impl std::fmt::Debug for BindingResponse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingResponse")
            .field("len", &self.pkt.len())
            .finish_non_exhaustive()
    }
}

impl<'a> BindingResponse<'a> {
    /// Checks the header, attribute framing, FINGERPRINT and the presence of
    /// MESSAGE-INTEGRITY.
    pub fn parse(pkt: &'a [u8]) -> Result<Self, StunError> {
        let attrs = scan(pkt, BINDING_SUCCESS, StunError::NotBindingSuccess)?;
        let integrity_at = attrs.integrity.ok_or(StunError::MissingIntegrity)?;
        let txid = pkt
            .get(8..HEADER)
            .and_then(|t| t.first_chunk::<12>())
            .ok_or(StunError::Truncated)?;
        Ok(Self {
            pkt,
            txid: *txid,
            integrity_at,
        })
    }

    /// The transaction id: that of the check it answers.
    pub fn transaction_id(&self) -> [u8; 12] {
        self.txid
    }

    /// Verifies MESSAGE-INTEGRITY with the endpoint's pwd, in constant time.
    pub fn verify_integrity(&self, pwd: &[u8]) -> bool {
        integrity_ok(self.pkt, self.integrity_at, pwd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::testutil::*;
    use crate::stun::{
        FP_ATTR, MAX_USERNAME, MI_ATTR, binding_request, random_ufrag, xor_mapped_value,
    };
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
    fn the_forwarders_check_is_answered_by_the_agent_and_verifies() {
        let (fu, cu, pwd) = (random_ufrag(), random_ufrag(), b"the-endpoint-pwd-24chars");
        let mut out = [0u8; MAX_CHECK];
        let n = write_check(&mut out, &[4; 12], &cu, &fu, pwd, 7).unwrap();
        let check = BindingRequest::parse(&out[..n]).unwrap();
        assert_eq!(check.ufrags(), Ok((cu.as_str(), fu.as_str())));
        assert!(check.controlled() && !check.use_candidate());
        assert!(check.verify_integrity(pwd));
        let from = "192.0.2.1:10000".parse().unwrap();
        let answer = crate::stun::answer_check(&out[..n], from, &fu, &cu, pwd).unwrap();
        assert!(is_success_response(&answer));
        let resp = BindingResponse::parse(&answer).unwrap();
        assert_eq!(resp.transaction_id(), [4; 12]);
        assert!(resp.verify_integrity(pwd));
        assert!(!resp.verify_integrity(b"another-pwd"));
        // The agent answers only its own endpoint's checks, keyed by its pwd.
        assert!(crate::stun::answer_check(&out[..n], from, &fu, "other", pwd).is_none());
        assert!(crate::stun::answer_check(&out[..n], from, &fu, &cu, b"x").is_none());
        // A participant's own request is no check to answer (the roles are swapped).
        let own = binding_request([5; 12], &fu, &cu, pwd);
        assert!(crate::stun::answer_check(&own, from, &fu, &cu, pwd).is_none());
        // Longest ufrags fit; longer do not.
        let long = "u".repeat(MAX_USERNAME - 1 - 4);
        assert!(write_check(&mut out, &[0; 12], &long, "abcd", pwd, 0).is_some());
        assert!(write_check(&mut out, &[0; 12], &long, "abcde", pwd, 0).is_none());
        // The request a participant sends is never taken for an answer.
        assert!(!is_success_response(&own));
        assert!(BindingResponse::parse(&own).is_err());
    }

    #[test]
    fn debug_output_redacts_the_username() {
        let pkt = binding_request([1; 12], "secretfwd", "secretcli", b"pwd");
        let shown = format!("{:?}", BindingRequest::parse(&pkt).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }
}
