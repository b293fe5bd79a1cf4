//! A signalling service that replays every join request (roster entry and KeyPackage),
//! Welcome and Commit it ever relayed (test-only hostile mode) admits no one and moves no
//! one: the group keeps its epoch, members, verification code and media, every member counts
//! the refused replays, and a real new member still joins. Real forwarder and service in
//! this process, real UDP and WebSockets.

mod common;

use std::sync::Arc;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use blindfold::e2ee::SendState;
use blindfold::signal::hostile::Action;
use blindfold::signal::{SignalArgs, SignalServer};

#[test]
fn replayed_joins_welcomes_and_commits_admit_no_one() {
    let fwd = common::forwarder(1);
    let signal = SignalServer::start_hostile(
        &SignalArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            forwarders: vec![format!("http://{}", fwd.control_addr())],
            control_token: common::TOKEN.into(),
            debug_state: true,
            metrics: false,
            speaker_detection: true,
            limits: Default::default(),
            health: Default::default(),
        },
        Arc::new(|_: &_, _: &str, _: &str, _: Option<u64>| Action::Deliver),
    )
    .unwrap();
    let secret: [u8; 32] = rand::random();
    let spawn = |i: usize| {
        let p = Participant::spawn(ParticipantConfig::new(
            &signal.ws_url(),
            secret,
            Identity::generate(&format!("p{i}"), "d"),
        ))
        .unwrap();
        p.wait_ready(common::DEADLINE).expect("ready");
        p
    };
    let mut ps: Vec<Participant> = (0..4).map(spawn).collect();
    // One member leaves, so the history holds a departed member's entry and KeyPackage.
    let gone = ps.remove(3);
    gone.leave(common::DEADLINE).unwrap();
    assert!(ps[0].wait_stats(common::DEADLINE, |s| s.group_size == 3 && s.decrypted > 50));
    let settled = |ps: &[Participant]| {
        let codes: Vec<_> = ps.iter().map(|p| p.verification_code()).collect();
        codes.iter().all(|c| c.is_some() && *c == codes[0])
    };
    assert!(common::wait_for(|| settled(&ps)));
    let codes = ps[0].verification_code();
    let conf = ps[0].conference().to_hex();

    let replayed = signal.replay(&conf);
    assert!(replayed > 10, "history replayed: {replayed}");
    assert!(common::wait_for(|| ps.iter().all(|p| p
        .stats()
        .key_packages_refused
        >= 3
        && p.stats().handshakes_refused > 0)));
    for p in &ps {
        let s = p.stats();
        assert_eq!(p.verification_code(), codes, "a replay moved the group");
        assert_eq!(s.group_size, 3, "a replay admitted someone: {s:?}");
        assert_eq!(p.send_state(), Some(SendState::Sending));
        assert_eq!(s.failed, 0);
    }
    // The real person behind the departed member joins again (with a fresh id).
    let back = spawn(3);
    ps.push(back);
    assert!(common::wait_for(
        || settled(&ps) && ps.iter().all(|p| p.stats().group_size == 4)
    ));
    assert_ne!(ps[0].verification_code(), codes);
    for p in ps {
        let (_, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
    }
    let _ = gone.stop();
}
