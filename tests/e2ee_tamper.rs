//! Changing any octet of an SRTP packet, an SRTCP packet (encrypted or tagging-only), an
//! MLS Commit or a Welcome is detected, and the failed attempt changes no state: the genuine
//! message is still accepted afterwards. Truncations are refused without panicking.

use blindfold::e2ee::sim::{Msg, SimCall, keyed_pair};
use blindfold::e2ee::{E2eeSession, ParticipantId, ScheduleConfig, SendState};

type Session = E2eeSession;

/// A call of two members; a third joins while the service withholds its Welcome and the
/// Commit from the second member, so both can be tampered with: (call, joiner, second
/// member, Commit, Welcome).
fn withheld_join() -> (SimCall, ParticipantId, ParticipantId, Vec<u8>, Vec<u8>) {
    let mut call = SimCall::new(ScheduleConfig::default());
    let _first = call.join();
    let second = call.join();
    call.advance(500);
    call.set_policy(move |_, env| match (&env.msg, env.to == second) {
        (Msg::Welcome(_), _) | (Msg::Handshake(_), true) => blindfold::e2ee::sim::Verdict::Drop,
        _ => blindfold::e2ee::sim::Verdict::Deliver,
    });
    let joiner = call.join();
    let welcome = call
        .relayed
        .iter()
        .rev()
        .find_map(|e| match &e.msg {
            Msg::Welcome(w) => Some(w.clone()),
            _ => None,
        })
        .expect("the joiner's Welcome was made");
    let commit = call
        .relayed
        .iter()
        .rev()
        .find_map(|e| match &e.msg {
            Msg::Handshake(c) if e.commit && e.to == second => Some(c.clone()),
            _ => None,
        })
        .expect("the Commit adding the joiner was made");
    (call, joiner, second, commit, welcome)
}

#[test]
fn any_changed_octet_of_a_welcome_or_commit_is_rejected() {
    let (mut call, joiner, second, commit, welcome) = withheld_join();
    let epoch = call.session(second).verification_code();
    let now = call.now;
    for i in (0..commit.len()).step_by(3) {
        let mut altered = commit.clone();
        altered[i] ^= 0x01;
        call.session(second)
            .handle_input(blindfold::e2ee::Input::Handshake(&altered), now);
        assert_eq!(
            call.session(second).verification_code(),
            epoch,
            "octet {i} of the Commit went unnoticed"
        );
    }
    for i in (0..welcome.len()).step_by(7) {
        let mut altered = welcome.clone();
        altered[i] ^= 0x01;
        call.session(joiner)
            .handle_input(blindfold::e2ee::Input::Welcome(&altered), now);
        assert_eq!(
            call.session(joiner).state(),
            SendState::Joining,
            "octet {i} of the Welcome went unnoticed"
        );
    }
    // The genuine ones still work afterwards.
    call.session(second)
        .handle_input(blindfold::e2ee::Input::Handshake(&commit), now);
    call.session(joiner)
        .handle_input(blindfold::e2ee::Input::Welcome(&welcome), now);
    assert_ne!(call.session(second).verification_code(), epoch);
    assert_eq!(
        call.session(second).verification_code(),
        call.session(joiner).verification_code()
    );
}

fn check_every_octet(b: &mut Session, a_id: &ParticipantId, protected: &[u8], rtcp: bool) {
    let attempt = |b: &mut Session, buf: &mut [u8]| {
        if rtcp {
            b.unprotect_rtcp(a_id, buf, 0).map(|o| o.len)
        } else {
            b.unprotect_rtp(a_id, buf, 0)
        }
    };
    for i in 0..protected.len() {
        for flip in [0x01u8, 0x80] {
            let mut altered = protected.to_vec();
            altered[i] ^= flip;
            assert!(
                attempt(b, &mut altered).is_err(),
                "octet {i} ^ {flip:#x} went unnoticed"
            );
        }
    }
    for cut in 0..protected.len() {
        let mut short = protected[..cut].to_vec();
        assert!(
            attempt(b, &mut short).is_err(),
            "truncation to {cut} accepted"
        );
    }
    let mut genuine = protected.to_vec();
    attempt(b, &mut genuine).expect("the genuine packet still verifies");
}

#[test]
fn any_changed_octet_of_an_srtp_packet_is_rejected() {
    let (mut a, mut b, a_id) = keyed_pair(ScheduleConfig::default());
    // CSRC and a header extension, so every header field is covered.
    let mut packet = vec![0x91, 0xe0, 0x12, 0x34, 0, 0, 0, 9, 0xca, 0xfe, 0xba, 0xbe];
    packet.extend_from_slice(&[0, 0, 0, 7]);
    packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x7f, 0, 0]);
    packet.extend_from_slice(b"payload");
    a.protect_rtp_vec(&mut packet).unwrap();
    check_every_octet(&mut b, &a_id, &packet, false);
}

#[test]
fn any_changed_octet_of_an_encrypted_srtcp_packet_is_rejected() {
    let (mut a, mut b, a_id) = keyed_pair(ScheduleConfig::default());
    let mut sr = vec![0x80, 200, 0, 6, 0xca, 0xfe, 0xba, 0xbe];
    sr.extend_from_slice(&[7; 20]);
    a.protect_rtcp_vec(&mut sr).unwrap();
    assert_eq!(sr[sr.len() - 8] & 0x80, 0x80, "E=1");
    check_every_octet(&mut b, &a_id, &sr, true);
}

#[test]
fn any_changed_octet_of_a_feedback_srtcp_packet_is_rejected() {
    let (mut a, mut b, a_id) = keyed_pair(ScheduleConfig::default());
    // RR with no blocks + PLI for media SSRC 0x01020304.
    let mut fb = vec![0x80, 201, 0, 1, 0xca, 0xfe, 0xba, 0xbe];
    fb.extend_from_slice(&[0x81, 206, 0, 2, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3, 4]);
    let plain = fb.clone();
    a.protect_rtcp_vec(&mut fb).unwrap();
    assert_eq!(fb[fb.len() - 8] & 0x80, 0, "E=0");
    assert_eq!(
        &fb[..plain.len()],
        &plain[..],
        "feedback stays readable to the forwarder"
    );
    check_every_octet(&mut b, &a_id, &fb, true);
}
