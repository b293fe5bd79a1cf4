//! The participant's side of the forwarder's return-path check.
//!
//! Before the forwarder sends media to an address, it sends a Binding request there
//! (USERNAME "{our ufrag}:{its ufrag}", keyed by the endpoint's pwd) and waits for the
//! answer from that very address. Owns the one rule that keeps the proof meaningful:
//! answer only checks that arrive from the forwarder's address and verify with our
//! endpoint's credentials, so nobody can make us vouch for an address through a relay.
//! Must not touch the socket: the caller sends what it returns.

use std::net::SocketAddr;

use blindfold_proto::stun;
use blindfold_signal::proto::Ice;

/// The answer to send back to `from` if `pkt` is the forwarder's check for our endpoint.
pub(crate) fn answer(
    pkt: &[u8],
    from: SocketAddr,
    forwarder: SocketAddr,
    ice: &Ice,
    client_ufrag: &str,
) -> Option<Vec<u8>> {
    if from != forwarder {
        return None;
    }
    stun::answer_check(pkt, from, &ice.ufrag, client_ufrag, ice.pwd.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::MAX_CHECK;

    #[test]
    fn answers_only_the_forwarders_own_checks() {
        let ice = Ice {
            ufrag: "fwdufragfwdufrag".into(),
            pwd: "0123456789abcdefghijklmn".into(),
        };
        let fwd: SocketAddr = "192.0.2.1:10000".parse().unwrap();
        let mut out = [0u8; MAX_CHECK];
        let n =
            stun::write_check(&mut out, &[9; 12], "me", &ice.ufrag, ice.pwd.as_bytes(), 1).unwrap();
        let check = &out[..n];
        let a = answer(check, fwd, fwd, &ice, "me").expect("answered");
        assert!(stun::parse_binding_success(&a, &[9; 12], ice.pwd.as_bytes()).is_ok());
        let elsewhere: SocketAddr = "192.0.2.2:10000".parse().unwrap();
        assert!(answer(check, elsewhere, fwd, &ice, "me").is_none());
        assert!(answer(check, fwd, fwd, &ice, "someone-else").is_none());
    }
}
