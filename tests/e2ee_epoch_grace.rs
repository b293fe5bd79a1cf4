//! Reordering across an epoch boundary: a packet of the previous epoch that arrives after
//! the switch decrypts within the grace window (2 s) and fails once it has passed and the
//! old secret was erased. Checked for a ratchet step and for a new MLS epoch after a leave.

use blindfold::e2ee::sim::{SimCall, keyed_pair};
use blindfold::e2ee::{E2eeError, E2eeSession, EpochId, ParticipantId, ScheduleConfig, SrtpError};

fn packet(s: &mut E2eeSession, seq: u16) -> (Vec<u8>, EpochId) {
    let mut p = vec![
        0x80,
        96,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0,
        1,
        0xab,
        0xcd,
        0,
        1,
    ];
    p.extend_from_slice(b"media payload");
    s.protect_rtp_vec(&mut p).unwrap();
    (p, s.sending_epoch().unwrap())
}

fn receive(
    s: &mut E2eeSession,
    from: &ParticipantId,
    p: &[u8],
    now: u64,
) -> Result<usize, E2eeError> {
    let mut buf = p.to_vec();
    s.unprotect_rtp(from, &mut buf, now)
}

fn ratchet_step_scenario(late_at: u64) -> Result<usize, E2eeError> {
    let (mut a, mut b, a_id) = keyed_pair(ScheduleConfig::default());
    let (old, e_old) = packet(&mut a, 1);
    a.handle_timeout(40_000);
    let (new, e_new) = packet(&mut a, 2);
    assert_eq!(
        e_new,
        e_old.next_step().unwrap(),
        "the timer ratcheted one step"
    );
    // The new-step packet arrives first; the receiver follows it.
    receive(&mut b, &a_id, &new, 40_000).unwrap();
    assert_eq!(b.sending_epoch(), Some(e_new));
    b.handle_timeout(late_at);
    receive(&mut b, &a_id, &old, late_at)
}

#[test]
fn reordered_packet_of_previous_step_decrypts_within_grace() {
    assert!(ratchet_step_scenario(40_000 + 1_999).is_ok());
}

#[test]
fn reordered_packet_of_previous_step_fails_after_grace() {
    assert!(matches!(
        ratchet_step_scenario(40_000 + 2_000),
        Err(E2eeError::Srtp(SrtpError::UnknownEpoch(_)))
    ));
}

fn rekey_scenario(late_by: u64) -> Result<usize, E2eeError> {
    let mut call = SimCall::new(ScheduleConfig::default());
    let a = call.join();
    let b = call.join();
    let c = call.join();
    call.advance(500);
    let (old, e_old) = packet(call.session(a), 1);
    call.leave(c, false);
    call.advance(500);
    let (new, e_new) = packet(call.session(a), 2);
    assert_ne!(
        e_new.generation(),
        e_old.generation(),
        "a leave starts a new generation"
    );
    let now = call.now;
    receive(call.session(b), &a, &new, now).unwrap();
    call.advance(late_by);
    let now = call.now;
    receive(call.session(b), &a, &old, now)
}

#[test]
fn reordered_packet_across_rekey_decrypts_within_grace() {
    assert!(rekey_scenario(1_400).is_ok());
}

#[test]
fn reordered_packet_across_rekey_fails_after_grace() {
    assert!(matches!(
        rekey_scenario(2_100),
        Err(E2eeError::Srtp(SrtpError::UnknownEpoch(_)))
    ));
}
