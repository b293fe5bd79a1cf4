//! The typed control client against the real server: every operation round-trips through
//! the shared wire types, and refusals come back classified: a taken id (`Exists`) is
//! told apart from capacity exhaustion (`Capacity`), a missing conference (`NotFound`)
//! and draining (`Unavailable`).

mod common;

use blindfold::control::client::ControlError;
use blindfold::control::{ErrorCode, SubscriptionJson, SubscriptionState, TrackJson, TrackKind};
use blindfold::forwarder::config::ServeArgs;

use common::control::*;

#[test]
fn every_operation_round_trips_through_the_typed_client() {
    let h = start(config());
    let c = &h.client;
    let random = c.create_conference(None).unwrap().id;
    assert_eq!(c.create_conference(Some("c")).unwrap().id, "c");
    let a = c.create_endpoint("c", Some("a")).unwrap();
    assert_eq!(a.id, "a");
    assert_eq!(a.candidates.len(), 1);
    assert_eq!(std::net::SocketAddr::from(a.candidates[0]), h.candidates[0]);
    assert!(!a.ice.ufrag.is_empty() && !a.ice.pwd.is_empty());
    let b = c.create_endpoint("c", None).unwrap();
    let mic = TrackJson::new("mic", TrackKind::Audio, [1]);
    c.set_tracks("c", "a", vec![mic.clone()]).unwrap();
    c.set_subscriptions("c", &b.id, vec![SubscriptionJson::new("a", "mic")])
        .unwrap();
    c.set_address("c", &b.id, "127.0.0.1:4000".parse().unwrap())
        .unwrap();

    let state = c.conference("c").unwrap();
    assert_eq!(state.endpoint("a").unwrap().tracks, vec![mic]);
    let sub = &state.endpoint(&b.id).unwrap();
    assert!(sub.latched);
    assert_eq!(
        sub.subscriptions,
        vec![SubscriptionState {
            endpoint: "a".into(),
            track: "mic".into(),
            active: true,
            layer: None,
            paused: false,
        }]
    );
    let mut ids: Vec<String> = c
        .list_conferences()
        .unwrap()
        .conferences
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    let mut expected = vec![random, "c".to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(c.openapi().unwrap()["paths"].is_object());
    assert!(c.metrics().unwrap().contains("blindfold_endpoints 2"));
    assert!(c.healthz().unwrap());

    c.delete_endpoint("c", "a").unwrap();
    c.delete_conference("c").unwrap();
    assert!(matches!(
        c.conference("c"),
        Err(ControlError::NotFound(r)) if r.code == Some(ErrorCode::ConferenceNotFound)
    ));
}

#[test]
fn refusals_are_typed_and_capacity_is_not_taken() {
    let h = start(ServeArgs {
        max_conferences: 1,
        max_endpoints_per_conference: 1,
        ..config()
    });
    let c = &h.client;
    c.create_conference(Some("c")).unwrap();
    let taken = c.create_conference(Some("c")).unwrap_err();
    assert!(matches!(taken, ControlError::Exists(_)), "{taken}");
    assert_eq!(taken.code(), Some(ErrorCode::ConferenceExists));
    let full = c.create_conference(Some("d")).unwrap_err();
    assert!(matches!(full, ControlError::Capacity(_)), "{full}");
    assert_eq!(full.code(), Some(ErrorCode::TooManyConferences));
    assert_eq!(full.status(), Some(409));

    c.create_endpoint("c", Some("a")).unwrap();
    assert!(matches!(
        c.create_endpoint("c", Some("a")),
        Err(ControlError::Exists(_))
    ));
    assert!(matches!(
        c.create_endpoint("c", Some("b")),
        Err(ControlError::Capacity(_))
    ));
    assert!(matches!(
        c.create_endpoint("nope", Some("b")),
        Err(ControlError::NotFound(_))
    ));
    let bad = c
        .set_tracks("c", "a", vec![TrackJson::new("t", TrackKind::Video, [])])
        .unwrap_err();
    assert!(matches!(bad, ControlError::Refused(_)), "{bad}");
    assert_eq!(bad.code(), Some(ErrorCode::InvalidValue));
    // an id that would change the path is refused before anything is sent
    assert!(matches!(
        c.delete_endpoint("c", "../x"),
        Err(ControlError::InvalidId(_))
    ));

    h.server().begin_drain();
    c.delete_conference("c").unwrap();
    assert!(matches!(
        c.create_conference(None),
        Err(ControlError::Unavailable(_))
    ));
    assert!(!c.healthz().unwrap());
}

#[test]
fn a_wrong_token_and_an_unreachable_forwarder_are_errors_not_panics() {
    let h = start(config());
    let wrong = blindfold::control::blocking::Client::new(&h.base, Some("wrong")).unwrap();
    let e = wrong.list_conferences().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized));
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = blindfold::control::blocking::Client::new(&format!("http://{addr}"), None).unwrap();
    assert!(matches!(
        gone.list_conferences(),
        Err(ControlError::Transport(_))
    ));
}
