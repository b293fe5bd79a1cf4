//! A STUN flood against the real process: checks from one unlatched source are answered
//! only when their MESSAGE-INTEGRITY verifies, and beyond 50 per second from a source they
//! are refused before any HMAC work, counted `stun_rate_limited`; a legitimate client on
//! another address still latches during the flood.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn a_stun_flood_is_rate_limited_and_answers_nothing() {
    let serve = ServeProcess::start(1, &[]);
    let api = Api::new(serve.control);
    api.conference("f1");
    let creds = api.endpoint("f1", "victim");
    let attacker = Peer::new(serve.media);
    // The attacker knows the ufrag (it is not secret) but not the pwd.
    for i in 0..400u32 {
        let mut txid = [0u8; 12];
        txid[..4].copy_from_slice(&i.to_be_bytes());
        let req = blindfold::proto::stun::binding_request(
            txid,
            &creds.ufrag,
            "x",
            b"guessed-password-guessed",
        );
        attacker.send(&req);
    }
    assert!(
        wait_for(|| api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"stun_rate_limited\""
        ) >= 300),
        "the flood beyond 50/s was refused before the HMAC"
    );
    assert!(
        api.counter(
            "blindfold_dropped_packets_total",
            "reason=\"stun_bad_integrity\""
        ) >= 1
    );
    // A legitimate client still latches while the attacker's bucket is empty.
    let client = Peer::new(serve.media);
    assert!(client.try_latch(&creds, Duration::from_secs(5)).is_some());
    assert!(
        attacker.drain().is_empty(),
        "the attacker got answers to unverifiable checks"
    );
}
