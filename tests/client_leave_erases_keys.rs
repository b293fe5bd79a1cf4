//! After `left`, an honest participant holds no key: its group and every media key are
//! erased at the leave, so a recording of what it received just before opens with none of
//! its keys. The control is a leaver told to keep its keys (the demo's attacker), which
//! opens the same recording. Real forwarder and service in this process.

mod common;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use blindfold::signal::{SignalArgs, SignalServer};

#[test]
fn an_honest_leaver_keeps_no_key() {
    let fwd = common::forwarder(1);
    let signal = SignalServer::start(&SignalArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        forwarders: vec![format!("http://{}", fwd.control_addr())],
        control_token: common::TOKEN.into(),
        debug_state: false,
        metrics: false,
        speaker_detection: true,
        limits: Default::default(),
        health: Default::default(),
    })
    .unwrap();
    let secret: [u8; 32] = rand::random();
    let config = |i: usize| {
        let mut c = ParticipantConfig::new(
            &signal.ws_url(),
            secret,
            Identity::generate(&format!("p{i}"), "d"),
        );
        c.record = if i == 0 { 100_000 } else { 0 };
        c.keep_keys_after_leave = i == 2;
        c
    };
    let ps: Vec<Participant> = (0..3)
        .map(|i| {
            let p = Participant::spawn(config(i)).unwrap();
            p.wait_ready(common::DEADLINE).unwrap();
            p
        })
        .collect();
    assert!(ps[0].wait_stats(common::DEADLINE, |s| s.decrypted > 50 && s.group_size == 3));
    let recent: Vec<Vec<u8>> = ps[0]
        .captured()
        .iter()
        .rev()
        .take(20)
        .map(|c| c.data.clone())
        .collect();
    ps[1].leave(common::DEADLINE).unwrap();
    ps[2].leave(common::DEADLINE).unwrap();
    let honest = ps[1].probe(recent.clone(), common::DEADLINE).unwrap();
    let attacker = ps[2].probe(recent, common::DEADLINE).unwrap();
    assert_eq!(
        honest.opened, 0,
        "an honest leaver still held keys: {honest:?}"
    );
    assert!(
        attacker.tried > 0 && attacker.opened == attacker.tried,
        "control {attacker:?}"
    );
    for p in ps {
        let _ = p.stop();
    }
}
