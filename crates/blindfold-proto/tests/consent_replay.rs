//! Consent cannot be kept alive by replays: a retransmission (a transaction id already
//! answered) is answered again but refreshes nothing, so a captured check replayed with
//! the selected address forged does not keep media flowing to that address; and once
//! consent has lapsed, the address must answer the forwarder's check again before media
//! resumes (it may belong to someone else by then).

mod common;
use blindfold_proto::sim::{MEDIA_ADDR, SimConfig};
use blindfold_proto::stun::BindingRequest;
use common::*;
use std::time::Duration;

#[test]
fn replaying_a_captured_check_from_the_selected_address_does_not_extend_consent() {
    let mut call = Call::new(SimConfig::default());
    let b = call.addr("b");
    let captured = call.agent("b").check(true);
    call.sim.receive(b, &captured.data);
    // b vanishes; an off-path attacker forging b's address replays the check every 5 s.
    for _ in 0..7 {
        call.sim.advance(Duration::from_secs(5));
        let h = call.sim.receive(b, &captured.data);
        assert!(
            h.to(b).any(|d| call.agents[1].verifies(&captured, d)),
            "answered"
        );
    }
    let h = call.send("a", &rtp(0xA1, 1, 20));
    assert!(h.to(b).next().is_none(), "consent outlived b");
}

#[test]
fn after_consent_lapses_the_address_must_prove_itself_again() {
    let mut call = Call::new(SimConfig::default());
    let b = call.addr("b");
    call.sim.advance(Duration::from_secs(31));
    let mut agent = call.agent("b").clone();
    let check = agent.check(true);
    let h = call.sim.receive(b, &check.data);
    let probe: Vec<u8> = h
        .to(b)
        .find(|d| BindingRequest::parse(d).is_ok())
        .expect("the forwarder checks the lapsed address again")
        .to_vec();
    let h = call.send("a", &rtp(0xA1, 1, 20));
    assert!(h.to(b).next().is_none(), "media before the new proof");
    let answer = agent.answer(&probe, MEDIA_ADDR).unwrap();
    call.sim.receive(b, &answer);
    let h = call.send("a", &rtp(0xA1, 2, 20));
    assert!(h.to(b).next().is_some(), "b proved its address again");
}
