//! Control API conferences: create (given or random id), refuse a taken or invalid id,
//! list, inspect (never an address), delete.

mod common;

use serde_json::json;

use common::control::*;

#[test]
fn conference_lifecycle_and_listing() {
    let h = start(config());
    let r = h.call("POST", "/v1/conferences", Some(json!({})));
    assert_eq!(r.status, 201);
    let random = r.json()["id"].as_str().unwrap().to_owned();
    assert!(!random.is_empty() && random.len() <= 64);
    h.conference("room-1");
    let r = h.call("POST", "/v1/conferences", Some(json!({"id": "room-1"})));
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "conference_exists");
    for bad in ["", "a b", "é", &"x".repeat(65)] {
        let r = h.call("POST", "/v1/conferences", Some(json!({ "id": bad })));
        assert_eq!(r.status, 400, "id {bad:?}");
        assert_eq!(r.error_code(), "invalid_id");
    }
    assert!(h.drain().is_empty(), "an empty conference needs no update");

    h.endpoint("room-1", "alice");
    let r = h.get("/v1/conferences");
    assert_eq!(r.status, 200);
    let mut expected = vec![
        json!({"id": random, "endpoints": 0}),
        json!({"id": "room-1", "endpoints": 1}),
    ];
    expected.sort_by_key(|v| v["id"].as_str().unwrap().to_owned());
    assert_eq!(r.json(), json!({ "conferences": expected }));

    let r = h.get("/v1/conferences/room-1");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["id"], "room-1");
    assert_eq!(
        v["endpoints"],
        json!([{
            "id": "alice", "latched": false, "consent_expires_in_ms": null,
            "tracks": [], "subscriptions": []
        }])
    );

    let r = h.call("DELETE", "/v1/conferences/room-1", None);
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    let r = h.get("/v1/conferences/room-1");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "conference_not_found");
    let r = h.call("DELETE", "/v1/conferences/room-1", None);
    assert_eq!(r.status, 404);
    let r = h.get("/v1/conferences/bad%20id");
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_id");
    assert_eq!(h.server().conference_count(), 1);
}
