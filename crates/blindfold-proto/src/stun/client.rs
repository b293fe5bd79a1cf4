//! The participant's half of STUN: building the Binding requests an ICE agent sends to
//! the forwarder ([`binding_request`]) and checking the forwarder's answers
//! ([`parse_binding_success`]). Used by the participant, the load generator and tests.
//!
//! Owns the agent side of the wire format; it may allocate (it runs once per check, not
//! per media packet). Must not touch sockets or timers: callers pace and retransmit.

use std::net::SocketAddr;

use super::server::{BindingRequest, write_binding_success};
use super::{
    BINDING_REQUEST, BINDING_SUCCESS, FP_ATTR, HEADER, MAX_RESPONSE, MAX_USERNAME, MI_ATTR,
    StunError, attr, decode_xor_mapped, integrity_ok, scan, write_message,
};

/// The priority a check advertises for the peer-reflexive candidate it may create
/// (RFC 8445 §5.1.2.1: type preference 110, local preference 65535, component 1).
const PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;

/// Builds a Binding request as blindfold's participant sends it to the forwarder: a
/// nominating [`Check`] (USE-CANDIDATE), as an agent facing an ICE-lite peer with one
/// candidate pair sends every check.
///
/// # Panics
/// If the USERNAME would exceed 508 bytes: ufrags are 4 to 256 characters.
pub fn binding_request(
    txid: [u8; 12],
    forwarder_ufrag: &str,
    client_ufrag: &str,
    pwd: &[u8],
) -> Vec<u8> {
    Check {
        forwarder_ufrag,
        client_ufrag,
        pwd,
        nominate: true,
    }
    .encode(txid)
}

/// A connectivity check from a full ICE agent to the forwarder (RFC 8445 §7.2.2).
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The forwarder endpoint's ufrag (first half of USERNAME).
    pub forwarder_ufrag: &'a str,
    /// The agent's own ufrag (second half).
    pub client_ufrag: &'a str,
    /// The forwarder endpoint's pwd, which keys MESSAGE-INTEGRITY.
    pub pwd: &'a [u8],
    /// Whether the check nominates its pair (USE-CANDIDATE, RFC 8445 §7.2.2): the
    /// controlling agent's choice of the pair media should use.
    pub nominate: bool,
}

impl Check<'_> {
    /// The request: USERNAME "{forwarder_ufrag}:{client_ufrag}", PRIORITY,
    /// ICE-CONTROLLING with a random tiebreaker (a full agent facing an ICE-lite one is
    /// controlling), USE-CANDIDATE when nominating, MESSAGE-INTEGRITY and FINGERPRINT.
    ///
    /// # Panics
    /// If the USERNAME would exceed 508 bytes: ufrags are 4 to 256 characters.
    pub fn encode(&self, txid: [u8; 12]) -> Vec<u8> {
        let username = format!("{}:{}", self.forwarder_ufrag, self.client_ufrag);
        assert!(
            username.len() <= MAX_USERNAME,
            "ICE ufrags too long for USERNAME"
        );
        let tiebreaker = rand::random::<u64>().to_be_bytes();
        let priority = PRFLX_PRIORITY.to_be_bytes();
        let mut attrs = vec![
            (attr::USERNAME, username.as_bytes()),
            (attr::PRIORITY, &priority[..]),
            (attr::ICE_CONTROLLING, &tiebreaker[..]),
        ];
        if self.nominate {
            attrs.push((attr::USE_CANDIDATE, &[][..]));
        }
        let mut out = vec![0u8; HEADER + 4 + MAX_USERNAME + 64 + MI_ATTR + FP_ATTR];
        let len = write_message(&mut out, BINDING_REQUEST, &txid, &attrs, self.pwd)
            // Invariant: the buffer was sized for the longest USERNAME allowed above.
            .expect("buffer sized for the request");
        out.truncate(len);
        out
    }
}

/// Answers the forwarder's return-path check: a Binding request the forwarder sends to an
/// address before it sends media there, with USERNAME "{client_ufrag}:{forwarder_ufrag}"
/// and MESSAGE-INTEGRITY keyed by the endpoint's pwd (the credentials both sides already
/// hold). Returns the success response to send back to `from`, or `None` when `pkt` is
/// not such a check for this endpoint: an agent answers only what it can verify, and
/// only from the forwarder's address, which the caller checks (answering checks from
/// elsewhere would let a third party relay the proof).
pub fn answer_check(
    pkt: &[u8],
    from: SocketAddr,
    forwarder_ufrag: &str,
    client_ufrag: &str,
    pwd: &[u8],
) -> Option<Vec<u8>> {
    let req = BindingRequest::parse(pkt).ok()?;
    if req.ufrags().ok()? != (client_ufrag, forwarder_ufrag) || !req.verify_integrity(pwd) {
        return None;
    }
    let mut out = [0u8; MAX_RESPONSE];
    let n = write_binding_success(&mut out, &req.transaction_id(), from, pwd);
    Some(out[..n].to_vec())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::testutil::*;
    use crate::stun::{
        BindingRequest, MAX_RESPONSE, random_pwd, random_ufrag, write_binding_success,
        write_message,
    };
    use proptest::prelude::*;
    use std::net::Ipv6Addr;
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

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
