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
    let (status, fwd_conf) = api.call("GET", &format!("/v1/conferences/{conf}"), None);
    assert_eq!(status, 200, "{fwd_conf}");
    let (_, fwd_list) = api.call("GET", "/v1/conferences", None);
    let views = [
        state_json.clone(),
        fwd_conf.to_string(),
        fwd_list.to_string(),
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
    let fwd_eps: Vec<String> = fwd_conf["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
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
    let (_, after) = api.call("GET", &format!("/v1/conferences/{conf}"), None);
    assert!(
        !after.to_string().contains(&leaver),
        "endpoint gone at once: {after}"
    );
    assert!(
        !serde_json::to_string(&signal.state())
            .unwrap()
            .contains(&leaver)
    );

    for p in ps {
        let (stats, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(stats.failed, 0);
    }
    // Everyone gone: the service deleted the conference from the forwarder.
    assert!(common::wait_for(|| signal.state().conferences.is_empty()));
    assert!(common::wait_for(|| api
        .call("GET", &format!("/v1/conferences/{conf}"), None)
        .0
        == 404));
    signal.stop();
    fwd.stop();
}
