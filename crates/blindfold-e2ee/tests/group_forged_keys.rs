//! A member's forged key or generation is never used by anyone: media under an epoch the
//! group never made is refused and never adopted, a Commit that admits an unproven member
//! is refused by every honest member (which stops sending rather than follow it), and a
//! Commit forged by someone outside the group moves nobody. In memory, simulated time.

mod common;

use blindfold_e2ee::sim::{Msg, SimCall};
use blindfold_e2ee::{
    CallSecret, E2eeError, EpochId, Input, MlsMember, ParticipantId, ScheduleConfig, SendState,
    SrtpError, SrtpKeys, SrtpSender, StallReason,
};
use common::call_of;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;

#[test]
fn media_under_a_forged_generation_or_key_is_never_adopted() {
    let (mut call, ids) = call_of(3);
    let (attacker, victim) = (ids[0], ids[1]);
    let sending = call.session(victim).sending_epoch().unwrap();
    for (epoch, key) in [
        (EpochId::new(0xffff, 0), [9u8; 16]),
        (EpochId::new(sending.generation() + 1, 0), [8; 16]),
        (
            EpochId::new(sending.generation(), sending.step() + 3),
            [7; 16],
        ),
    ] {
        let mut sender = SrtpSender::new();
        let keys = SrtpKeys::derive(&key, &[1; 12], Some(epoch));
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        p.resize(p.len() + blindfold_e2ee::RTP_OVERHEAD, 0);
        let n = sender.protect_rtp(&keys, &mut p, 16).unwrap();
        p.truncate(n);
        let now = call.now;
        let r = call.session(victim).unprotect_rtp(&attacker, &mut p, now);
        assert!(
            matches!(
                r,
                Err(E2eeError::Srtp(
                    SrtpError::UnknownEpoch(_) | SrtpError::AuthFailed
                ))
            ),
            "{epoch:?}: {r:?}"
        );
        assert_eq!(call.session(victim).sending_epoch(), Some(sending));
        assert!(!call.session(victim).schedule().holds(epoch));
    }
    call.advance(1_000);
    assert!(call.members.values().all(|m| m.failed == 0));
}

/// A hostile member: joins through the service like anyone (it knows the call secret), then
/// commits an Add for a KeyPackage that does not prove the call secret.
#[test]
fn a_members_commit_admitting_an_unproven_key_is_refused_by_everyone() {
    let (mut call, _ids) = call_of(3);
    let hostile_id = ParticipantId::random(&mut rand::rng());
    let mut hostile = MlsMember::new(call.call_secret(), hostile_id).unwrap();
    let kp = hostile.key_package().unwrap();
    call.announce(Msg::JoinRequest(hostile_id, kp), None);
    call.advance(1_000);
    let welcome = call
        .ds
        .welcomes
        .iter()
        .find_map(|(to, w)| to.contains(&hostile_id).then(|| w.clone()))
        .expect("a Welcome for the hostile member");
    hostile.join(&welcome).unwrap();
    let codes = call.codes();
    // The outsider's KeyPackage, parsed without the admission check.
    let outsider = SimCall::new(ScheduleConfig::default());
    let (_, _, outsider_kp) = outsider.stranger(&CallSecret::generate(&mut rand::rng()));
    let provider = OpenMlsRustCrypto::default();
    let MlsMessageBodyIn::KeyPackage(kp) =
        MlsMessageIn::tls_deserialize_exact(outsider_kp.as_slice())
            .unwrap()
            .extract()
    else {
        unreachable!()
    };
    let kp = kp
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let commit = hostile.commit(&[], vec![kp]).unwrap();
    let to: Vec<_> = call.members.keys().copied().collect();
    for t in to {
        call.send(
            Some(hostile_id),
            t,
            Msg::Handshake(commit.message.clone()),
            Some(commit.epoch),
            true,
        );
    }
    call.advance(2_000);
    assert_eq!(call.codes(), codes, "someone followed the hostile commit");
    for m in call.members.values() {
        assert_eq!(m.session.refusals().commits, 1);
        assert_eq!(
            m.session.state(),
            SendState::Stalled(StallReason::RefusedCommit)
        );
        assert!(m.session.roster().len() == 4);
    }
}

#[test]
fn a_commit_forged_outside_the_group_moves_nobody() {
    let (mut call, _ids) = call_of(3);
    let codes = call.codes();
    // The service (or anyone) makes its own group under the conference's id and epoch.
    let mut forger =
        MlsMember::new(call.call_secret(), ParticipantId::random(&mut rand::rng())).unwrap();
    forger.create_group().unwrap();
    let other = SimCall::new(ScheduleConfig::default());
    let (pid, _, kp_bytes) = other.stranger(call.call_secret());
    let kp = forger.validate_key_package(&kp_bytes, &pid).unwrap();
    let forged = forger.commit(&[], vec![kp]).unwrap();
    let now = call.now;
    for m in call.members.values_mut() {
        m.session
            .handle_input(Input::Handshake(&forged.message), now);
    }
    call.advance(1_000);
    assert_eq!(call.codes(), codes);
    assert!(call.states().iter().all(|s| *s == SendState::Sending));
    assert!(
        call.members
            .values()
            .all(|m| m.session.refusals().handshakes >= 1)
    );
}
