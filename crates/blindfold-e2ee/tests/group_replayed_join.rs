//! Joins prove themselves to the group: a replayed join request (roster entry and
//! KeyPackage), a replayed Welcome, a stranger's KeyPackage and a copied credential admit no
//! one, and a departed member's id cannot be taken over; the real member can still join.
//! In memory, simulated time.

mod common;

use blindfold_e2ee::sim::Msg;
use blindfold_e2ee::{CallSecret, Input, ParticipantId, SendState};
use common::call_of;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

fn join_request_of(call: &blindfold_e2ee::sim::SimCall, id: ParticipantId) -> Vec<u8> {
    call.relayed
        .iter()
        .find_map(|e| match &e.msg {
            Msg::JoinRequest(p, kp) if *p == id => Some(kp.clone()),
            _ => None,
        })
        .expect("the join request was relayed")
}

fn group_size(call: &blindfold_e2ee::sim::SimCall) -> Vec<usize> {
    call.members
        .values()
        .map(|m| m.session.roster().len())
        .collect()
}

#[test]
fn replayed_join_requests_and_welcomes_admit_no_one() {
    let (mut call, ids) = call_of(4);
    let d = ids[3];
    let d_kp = join_request_of(&call, d);
    let d_welcome = call
        .relayed
        .iter()
        .rev()
        .find_map(|e| match &e.msg {
            Msg::Welcome(w) if e.to == d => Some(w.clone()),
            _ => None,
        })
        .unwrap();
    // While D is a member: its roster entry and KeyPackage replayed.
    let commits = call.ds.commits.len();
    call.announce(Msg::JoinRequest(d, d_kp.clone()), None);
    call.advance(2_000);
    assert_eq!(
        call.ds.commits.len(),
        commits,
        "a replay made someone commit"
    );
    // D leaves, erasing its keys; the service replays its join request and its Welcome.
    call.leave(d, false);
    call.advance(2_000);
    let commits = call.ds.commits.len();
    let codes = call.codes();
    call.announce(Msg::JoinRequest(d, d_kp.clone()), None);
    call.announce(Msg::Welcome(d_welcome.clone()), None);
    call.advance(3_000);
    assert_eq!(
        call.ds.commits.len(),
        commits,
        "the ghost of D was committed"
    );
    assert_eq!(call.codes(), codes);
    assert_eq!(group_size(&call), vec![3; 3]);
    assert!(
        call.members
            .values()
            .all(|m| m.session.refusals().key_packages > 0)
    );
    // A replayed Welcome admits no new participant either.
    let (e, mut e_session, _) = call.stranger(call.call_secret());
    e_session.handle_input(Input::Welcome(&d_welcome), call.now);
    assert_eq!(e_session.state(), SendState::Joining);
    assert_eq!(e_session.refusals().welcomes, 1);
    let _ = e;
    // The real person behind D joins again, with a fresh id, and is admitted.
    let d2 = call.join();
    call.advance(2_000);
    assert_eq!(group_size(&call), vec![4; 4]);
    assert!(call.members[&d2].session.roster().contains(&d2));
    assert!(!call.members[&d2].session.roster().contains(&d));
}

#[test]
fn a_strangers_key_package_and_a_copied_credential_admit_no_one() {
    let (mut call, ids) = call_of(3);
    let victim_kp = join_request_of(&call, ids[2]);
    // A stranger without the call secret.
    let other_call = CallSecret::generate(&mut rand::rng());
    let (stranger, _session, stranger_kp) = call.stranger(&other_call);
    call.announce(Msg::JoinRequest(stranger, stranger_kp), None);
    // A stranger that copies a member's credential onto its own signature key.
    let kp_in = match MlsMessageIn::tls_deserialize_exact(victim_kp.as_slice())
        .unwrap()
        .extract()
    {
        MlsMessageBodyIn::KeyPackage(kp) => kp,
        _ => unreachable!(),
    };
    let provider = OpenMlsRustCrypto::default();
    let kp = kp_in
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let copied = kp.leaf_node().credential().clone();
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let forged = KeyPackage::builder()
        .build(
            blindfold_e2ee::CIPHERSUITE,
            &provider,
            &signer,
            CredentialWithKey {
                credential: copied,
                signature_key: signer.public().into(),
            },
        )
        .unwrap();
    let forged = MlsMessageOut::from(forged.key_package().clone())
        .tls_serialize_detached()
        .unwrap();
    let fresh = ParticipantId::random(&mut rand::rng());
    call.announce(Msg::JoinRequest(fresh, forged.clone()), None);
    call.announce(Msg::JoinRequest(ids[2], forged), None);
    let commits = call.ds.commits.len();
    call.advance(3_000);
    assert_eq!(
        call.ds.commits.len(),
        commits,
        "someone committed an unproven join"
    );
    assert_eq!(group_size(&call), vec![3; 3]);
    assert!(
        call.members
            .values()
            .all(|m| m.session.refusals().key_packages >= 3)
    );
    // The departed-id case: the victim leaves; a copy of its entry under its id stays out.
    call.leave(ids[2], false);
    call.advance(2_000);
    call.announce(Msg::JoinRequest(ids[2], victim_kp), None);
    call.advance(2_000);
    assert_eq!(group_size(&call), vec![2; 2]);
}
