//! The signalling service's and the forwarder's view of a call holds only ephemeral ids:
//! none of the participants' long-lived identities (user name, device name, long-term key)
//! ever reaches them, and the ids they do hold are exactly the per-call derived ones.

mod common;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use blindfold::signal::{SignalArgs, SignalServer};

#[test]
fn service_and_forwarder_see_only_ephemeral_ids() {
    let fwd = common::forwarder(1);
    let signal = SignalServer::start(&SignalArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        forwarders: vec![format!("http://{}", fwd.control_addr())],
        control_token: common::TOKEN.into(),
        debug_state: true,
        metrics: false,
        speaker_detection: true,
        limits: Default::default(),
        health: Default::default(),
    })
    .unwrap();
    let secret = [42u8; 32];
    let identities: Vec<Identity> = ["alice@example.org", "bob@example.org", "carol@example.org"]
        .iter()
        .map(|u| Identity::generate(u, "phone-of-a-person"))
        .collect();
    let ps: Vec<Participant> = identities
        .iter()
        .map(|id| {
            let p =
                Participant::spawn(ParticipantConfig::new(&signal.ws_url(), secret, id.clone()))
                    .unwrap();
            p.wait_ready(common::DEADLINE).expect("participant ready");
            p
        })
        .collect();
    // Wait until every member decrypts media from the others: the call is fully set up.
    for p in &ps {
        assert!(
            p.wait_stats(common::DEADLINE, |s| s.decrypted > 20),
            "media flows"
        );
    }

    let state = signal.state();
    let state_json = serde_json::to_string(&state).unwrap();
    let api = common::Api::new(fwd.control_addr());
    let conf = ps[0].conference().to_hex();
    let fwd_conf = api.get(&conf);
    let fwd_list = api.list();
    let views = [
        state_json.clone(),
        serde_json::to_string(&fwd_conf).unwrap(),
        serde_json::to_string(&fwd_list).unwrap(),
        api.metrics(),
    ];

    for view in &views {
        for id in &identities {
            for secret_ish in [
                id.user.as_str(),
                id.device.as_str(),
                &hex::encode(id.long_term_key),
            ] {
                assert!(
                    !view.contains(secret_ish),
                    "long-lived id leaked: {secret_ish} in {view}"
                );
            }
            assert!(!view.contains("example.org") && !view.contains("alice"));
        }
        assert!(!view.contains(&hex::encode(secret)), "call secret leaked");
    }

    // What the service holds is exactly the ephemeral ids.
    assert_eq!(state.conferences.len(), 1);
    assert_eq!(state.conferences[0].id, conf);
    let mut held: Vec<String> = state.conferences[0]
        .members
        .iter()
        .map(|m| m.info.participant.clone())
        .collect();
    let mut expected: Vec<String> = ps.iter().map(|p| p.id().to_hex()).collect();
    held.sort();
    expected.sort();
    assert_eq!(held, expected);
    let fwd_eps: Vec<String> = fwd_conf.endpoints.iter().map(|e| e.id.clone()).collect();
    let mut fwd_eps_sorted = fwd_eps.clone();
    fwd_eps_sorted.sort();
    assert_eq!(fwd_eps_sorted, expected);

    // Participant ids are random per join and the conference id is unrelated across calls.
    let other = blindfold::e2ee::CallSecret::from_bytes([43; 32]);
    assert_ne!(other.conference_id().to_hex(), conf);

    // A leave takes the endpoint off the forwarder before the others hear of it, and the
    // service forgets it.
    let leaver = ps[2].id().to_hex();
    ps[2].leave(common::DEADLINE).unwrap();
    let after = api.get(&conf);
    assert!(
        after.endpoint(&leaver).is_none(),
        "endpoint gone at once: {after:?}"
    );
    // The others' subscription sets drop it as their updates land (after the leave).
    assert!(common::wait_for(|| !serde_json::to_string(&signal.state())
        .unwrap()
        .contains(&leaver)));

    for p in ps {
        let (stats, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(stats.failed, 0);
    }
    // Everyone gone: the service deleted the conference from the forwarder.
    assert!(common::wait_for(|| signal.state().conferences.is_empty()));
    assert!(common::wait_for(|| matches!(
        api.client().conference(&conf),
        Err(blindfold::control::client::ControlError::NotFound(_))
    )));
    signal.stop();
    fwd.stop();
}
