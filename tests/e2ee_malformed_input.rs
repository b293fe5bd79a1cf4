//! Arbitrary bytes from the network or from signalling never panic the E2EE core: random
//! packets into SRTP/SRTCP unprotect and random key messages into the schedule are refused
//! with an error, and leave the session able to receive the genuine traffic.

use blindfold::e2ee::{
    CallSecret, E2eeSession, HpkeTransport, Input, KeyPair, KeySchedule, Member, Output,
    ParticipantId, ScheduleConfig, SrtpKeys, SrtpReceiver,
};
use std::cell::RefCell;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use rand::SeedableRng;
use rand::rngs::StdRng;

type Session = E2eeSession<HpkeTransport>;

fn session(me: &Member, keys: KeyPair, roster: Vec<Member>) -> Session {
    let transport = HpkeTransport::new(me.id, keys, Box::new(StdRng::seed_from_u64(me.joined_at)));
    let schedule = KeySchedule::new(
        ScheduleConfig::default(),
        me,
        roster,
        transport,
        Box::new(StdRng::seed_from_u64(50 + me.joined_at)),
        0,
    )
    .unwrap();
    E2eeSession::new(schedule)
}

fn keyed_pair() -> (Session, Session, ParticipantId) {
    let call = CallSecret::from_bytes([6; 32]);
    let mk = |n: u64| {
        let keys = KeyPair::generate(&mut StdRng::seed_from_u64(n));
        let m = Member {
            id: call.participant_id(b"user", &n.to_be_bytes()),
            joined_at: n,
            transport_key: keys.public_bytes().to_vec(),
        };
        (m, keys)
    };
    let (ma, ka) = mk(1);
    let (mb, kb) = mk(2);
    let mut a = session(&ma, ka, vec![]);
    let mut b = session(&mb, kb, vec![ma.clone()]);
    a.handle_input(Input::MemberJoined(mb), 0).unwrap();
    while let Some(out) = a.poll_output() {
        if let Output::SendKeyMessage { message, .. } = out {
            b.handle_input(
                Input::KeyMessage {
                    from: ma.id,
                    message: &message,
                },
                0,
            )
            .unwrap();
        }
    }
    (a, b, ma.id)
}

#[test]
fn random_bytes_never_panic() {
    // One keyed pair for all cases: refused input must leave it working, which the
    // genuine packet at the end of every case checks.
    let (a, b, a_id) = keyed_pair();
    let state = RefCell::new((a, b, 0u16));
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..200),
        prop::sample::select(vec![0x80u8, 0x90, 0x9f, 0x81, 0x00, 0xbf]),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |(bytes, first, tail_mki)| {
            let (a, b, seq) = &mut *state.borrow_mut();
            let mut packet = bytes.clone();
            if let Some(p) = packet.first_mut() {
                *p = first;
            }
            if tail_mki && packet.len() >= 4 {
                // Name the real epoch so the attempt reaches the cipher.
                let epoch = a.sending_epoch().unwrap().to_bytes();
                let n = packet.len();
                packet[n - 4..].copy_from_slice(&epoch);
            }
            let mut buf = packet.clone();
            prop_assert!(b.unprotect_rtp(&a_id, &mut buf, 0).is_err());
            let mut buf = packet.clone();
            prop_assert!(b.unprotect_rtcp(&a_id, &mut buf, 0).is_err());
            let refused = b
                .handle_input(
                    Input::KeyMessage {
                        from: a_id,
                        message: &packet,
                    },
                    0,
                )
                .is_err();
            prop_assert!(refused);
            let plain_keys = SrtpKeys::derive(&[1; 16], &[2; 12], None);
            let mut rx = SrtpReceiver::new();
            let mut buf = packet.clone();
            let _ = rx.unprotect_rtp(&plain_keys, &mut buf);
            let mut buf = packet.clone();
            let _ = rx.unprotect_rtcp(&plain_keys, &mut buf);

            *seq += 1;
            let mut genuine = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 1, 2, 3];
            genuine[2..4].copy_from_slice(&seq.to_be_bytes());
            a.protect_rtp_vec(&mut genuine).unwrap();
            prop_assert!(b.unprotect_rtp(&a_id, &mut genuine, 0).is_ok());
            Ok(())
        })
        .unwrap();
}
