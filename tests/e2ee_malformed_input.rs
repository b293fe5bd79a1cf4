//! Arbitrary bytes from the network or from signalling never panic the E2EE core: random
//! packets into SRTP/SRTCP unprotect and random handshake messages, Welcomes and KeyPackages
//! into the group are refused (counted), change neither the epoch nor the sending state,
//! and leave the session able to receive the genuine traffic.

use blindfold::e2ee::sim::keyed_pair;
use blindfold::e2ee::{Input, ParticipantId, ScheduleConfig, SendState, SrtpKeys, SrtpReceiver};
use std::cell::RefCell;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;

#[test]
fn random_bytes_never_panic() {
    // One keyed pair for all cases: refused input must leave it working, which the
    // genuine packet at the end of every case checks.
    let (a, b, a_id) = keyed_pair(ScheduleConfig::default());
    let epoch = b.verification_code();
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
            let refused_before = b.refusals();
            b.handle_input(Input::Handshake(&packet), 0);
            b.handle_input(Input::Welcome(&packet), 0);
            b.handle_input(
                Input::JoinRequest {
                    participant: ParticipantId::from_bytes([7; 16]),
                    key_package: &packet,
                },
                0,
            );
            let r = b.refusals();
            prop_assert!(r.handshakes > refused_before.handshakes);
            prop_assert!(r.welcomes > refused_before.welcomes);
            prop_assert!(r.key_packages > refused_before.key_packages);
            prop_assert_eq!(b.state(), SendState::Sending);
            prop_assert_eq!(b.verification_code(), epoch.clone());
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
