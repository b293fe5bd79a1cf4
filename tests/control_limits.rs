//! Control API limits: count limits answer 409 with a capacity code, body limits 422,
//! and room comes back after deletions.

mod common;

use blindfold::forwarder::config::ServeArgs;
use serde_json::Value;
use serde_json::json;

use common::control::*;

#[test]
fn limits_answer_with_clear_4xx() {
    let h = start(ServeArgs {
        max_conferences: 1,
        max_endpoints_per_conference: 1,
        max_tracks_per_endpoint: 1,
        max_ssrcs_per_track: 2,
        max_subscriptions_per_endpoint: 1,
        ..config()
    });
    h.conference("c");
    let r = h.call("POST", "/v1/conferences", Some(json!({})));
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "too_many_conferences");
    h.endpoint("c", "a");
    let r = h.call("POST", "/v1/conferences/c/endpoints", Some(json!({})));
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "too_many_endpoints");
    let put = |what: &str, body: Value| {
        h.call(
            "PUT",
            &format!("/v1/conferences/c/endpoints/a/{what}"),
            Some(body),
        )
    };
    let r = put(
        "tracks",
        json!({"tracks": [
            {"id": "cam", "kind": "video", "ssrcs": [1]},
            {"id": "mic", "kind": "audio", "ssrcs": [2]},
        ]}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "too_many_tracks");
    let r = put(
        "tracks",
        json!({"tracks": [{"id": "cam", "kind": "video", "ssrcs": [1, 2, 3]}]}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "too_many_ssrcs");
    let r = put(
        "subscriptions",
        json!({"subscriptions": [
            {"endpoint": "x", "track": "cam"},
            {"endpoint": "y", "track": "cam"},
        ]}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.error_code(), "too_many_subscriptions");
    // room again once deleted
    assert_eq!(h.call("DELETE", "/v1/conferences/c", None).status, 204);
    h.conference("d");
}
