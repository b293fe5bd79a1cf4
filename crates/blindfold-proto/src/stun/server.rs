//! The forwarder's half of STUN: parsing and authenticating the Binding requests
//! participants send ([`BindingRequest`]) and writing the success response
//! ([`write_binding_success`]).
//!
//! Owns the per-packet STUN work, which must not allocate. Must not decide anything:
//! which pwd to verify with and what to latch are the router's.

use std::net::SocketAddr;

use super::{
    BINDING_REQUEST, BINDING_SUCCESS, HEADER, MAX_RESPONSE, StunError, attr, integrity_ok, scan,
    write_message, xor_mapped_value,
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
    fn debug_output_redacts_the_username() {
        let pkt = binding_request([1; 12], "secretfwd", "secretcli", b"pwd");
        let shown = format!("{:?}", BindingRequest::parse(&pkt).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }
}
