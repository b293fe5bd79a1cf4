//! Changing any octet of an SRTP packet, an SRTCP packet (encrypted or tagging-only) or a
//! sealed key message is detected, and the failed attempt changes no state: the genuine
//! message is still accepted afterwards. Truncations are refused without panicking.

use blindfold::e2ee::{
    CallSecret, E2eeSession, HpkeTransport, Input, KeyPair, KeySchedule, Member, Output,
    ParticipantId, ScheduleConfig,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

type Session = E2eeSession<HpkeTransport>;

fn member(call: &CallSecret, n: u64) -> (Member, KeyPair) {
    let keys = KeyPair::generate(&mut StdRng::seed_from_u64(n));
    let m = Member {
        id: call.participant_id(b"user", &n.to_be_bytes()),
        joined_at: n,
        transport_key: keys.public_bytes().to_vec(),
    };
    (m, keys)
}

fn session(me: &Member, keys: KeyPair, roster: Vec<Member>) -> Session {
    let transport = HpkeTransport::new(me.id, keys, Box::new(StdRng::seed_from_u64(me.joined_at)));
    let schedule = KeySchedule::new(
        ScheduleConfig::default(),
        me,
        roster,
        transport,
        Box::new(StdRng::seed_from_u64(100 + me.joined_at)),
        0,
    )
    .unwrap();
    E2eeSession::new(schedule)
}

/// A keyed generator `a`, a joiner `b` that has not yet opened its key message, and it.
fn joiner_and_key_message() -> (Session, Session, ParticipantId, Vec<u8>) {
    let call = CallSecret::from_bytes([5; 32]);
    let (ma, ka) = member(&call, 1);
    let (mb, kb) = member(&call, 2);
    let mut a = session(&ma, ka, vec![]);
    let b = session(&mb, kb, vec![ma.clone()]);
    a.handle_input(Input::MemberJoined(mb.clone()), 0).unwrap();
    let mut message = None;
    while let Some(out) = a.poll_output() {
        if let Output::SendKeyMessage { to, message: m } = out {
            assert_eq!(to, mb.id);
            message = Some(m);
        }
    }
    (a, b, ma.id, message.expect("the joiner is sent its key"))
}

fn keyed_pair() -> (Session, Session, ParticipantId) {
    let (a, mut b, a_id, message) = joiner_and_key_message();
    b.handle_input(
        Input::KeyMessage {
            from: a_id,
            message: &message,
        },
        0,
    )
    .unwrap();
    (a, b, a_id)
}

#[test]
fn any_changed_octet_of_a_sealed_key_message_is_rejected() {
    let (_, mut b, a_id, message) = joiner_and_key_message();
    for i in 0..message.len() {
        for flip in [0x01u8, 0x80] {
            let mut altered = message.clone();
            altered[i] ^= flip;
            assert!(
                b.handle_input(
                    Input::KeyMessage {
                        from: a_id,
                        message: &altered
                    },
                    0
                )
                .is_err(),
                "octet {i} ^ {flip:#x} went unnoticed"
            );
            assert!(!b.can_send(), "a rejected message installed a key");
        }
    }
    for cut in 0..message.len() {
        assert!(
            b.handle_input(
                Input::KeyMessage {
                    from: a_id,
                    message: &message[..cut]
                },
                0
            )
            .is_err()
        );
    }
    b.handle_input(
        Input::KeyMessage {
            from: a_id,
            message: &message,
        },
        0,
    )
    .unwrap();
    assert!(b.can_send());
}

#[test]
fn a_key_message_is_bound_to_its_sender_and_recipient() {
    let (_, mut b, _, message) = joiner_and_key_message();
    let stranger = CallSecret::from_bytes([5; 32]).participant_id(b"mallory", b"x");
    assert!(
        b.handle_input(
            Input::KeyMessage {
                from: stranger,
                message: &message
            },
            0
        )
        .is_err()
    );
    assert!(!b.can_send());
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
    let (mut a, mut b, a_id) = keyed_pair();
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
    let (mut a, mut b, a_id) = keyed_pair();
    let mut sr = vec![0x80, 200, 0, 6, 0xca, 0xfe, 0xba, 0xbe];
    sr.extend_from_slice(&[7; 20]);
    a.protect_rtcp_vec(&mut sr).unwrap();
    assert_eq!(sr[sr.len() - 8] & 0x80, 0x80, "E=1");
    check_every_octet(&mut b, &a_id, &sr, true);
}

#[test]
fn any_changed_octet_of_a_feedback_srtcp_packet_is_rejected() {
    let (mut a, mut b, a_id) = keyed_pair();
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
