//! Control API request validation: every malformed request gets a JSON error with a
//! stable code and changes nothing.

mod common;

use serde_json::json;

use common::control::*;

#[test]
fn bodies_are_validated_with_json_errors() {
    let h = start(config());
    h.conference("c");
    h.endpoint("c", "a");
    let r = h.call(
        "POST",
        "/v1/conferences",
        Some(json!({"id": "x", "colour": "red"})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_body");
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/a/tracks",
        Some(json!({"tracks": [{"id": "cam", "kind": "hologram", "ssrcs": [1]}]})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_body");
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/a/tracks",
        Some(json!({"tracks": [{"id": "cam", "kind": "video", "ssrcs": [-1]}]})),
    );
    assert_eq!(r.status, 400);
    let auth = h.auth();
    let r = h.raw(
        "POST",
        "/v1/conferences",
        auth.as_deref(),
        Some("application/json"),
        Some("{\"id\":".into()),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_json");
    let r = h.raw(
        "POST",
        "/v1/conferences",
        auth.as_deref(),
        Some("text/plain"),
        Some("{}".into()),
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.error_code(), "unsupported_media_type");
    // an oversize body is refused from its Content-Length, before it is sent
    let r = h.oversize_with_expect_continue("/v1/conferences", 10 << 20);
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error_code(), "payload_too_large");
    // semantic errors are 422
    for body in [
        json!({"tracks": [{"id": "cam", "kind": "video", "ssrcs": []}]}),
        json!({"tracks": [
            {"id": "cam", "kind": "video", "ssrcs": [1]},
            {"id": "cam", "kind": "audio", "ssrcs": [2]},
        ]}),
        json!({"tracks": [
            {"id": "cam", "kind": "video", "ssrcs": [1]},
            {"id": "mic", "kind": "audio", "ssrcs": [1]},
        ]}),
    ] {
        let r = h.call("PUT", "/v1/conferences/c/endpoints/a/tracks", Some(body));
        assert_eq!(r.status, 422);
        assert_eq!(r.error_code(), "invalid_value");
    }
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/a/subscriptions",
        Some(json!({"subscriptions": [{"endpoint": "a", "track": "cam"}]})),
    );
    assert_eq!(r.status, 422);
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/a/address",
        Some(json!({"ip": "224.0.0.1", "port": 5000})),
    );
    assert_eq!(r.status, 422);
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/a/address",
        Some(json!({"ip": "not-an-ip", "port": 5000})),
    );
    assert_eq!(r.status, 400);
    let r = h.get("/v1/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "no_such_route");
    let r = h.call("PATCH", "/v1/conferences", Some(json!({})));
    assert_eq!(r.status, 405);
    assert_eq!(r.error_code(), "method_not_allowed");
    assert_eq!(h.drain().len(), 0, "no refused request changed anything");
}
