//! The OpenAPI document: the documented contract, every documented operation routed, and
//! every schema present.

mod common;

use serde_json::json;

use common::control::*;

/// The contract of issue 2 (plus the list) is in the document, and every operation in the
/// document is served by the router. The router gets its routes only from the same
/// `#[utoipa::path]` attributes (utoipa-axum's `routes!`), so it has none the document
/// lacks.
#[test]
fn openapi_document_covers_every_route() {
    let h = start(config());
    let r = h.get("/v1/openapi.json");
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let contract = [
        ("get", "/v1/conferences"),
        ("post", "/v1/conferences"),
        ("get", "/v1/conferences/{conf}"),
        ("delete", "/v1/conferences/{conf}"),
        ("post", "/v1/conferences/{conf}/endpoints"),
        ("delete", "/v1/conferences/{conf}/endpoints/{ep}"),
        ("put", "/v1/conferences/{conf}/endpoints/{ep}/address"),
        ("put", "/v1/conferences/{conf}/endpoints/{ep}/tracks"),
        ("put", "/v1/conferences/{conf}/endpoints/{ep}/subscriptions"),
        ("put", "/v1/conferences/{conf}/endpoints/{ep}/receive"),
        ("put", "/v1/conferences/{conf}/settings"),
        ("get", "/v1/events"),
        ("get", "/v1/openapi.json"),
        ("get", "/metrics"),
        ("get", "/healthz"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = contract
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    h.conference("c");
    h.endpoint("c", "e");
    for (method, path) in &documented {
        if path == "/v1/events" {
            // A stream that never ends: only its answer's head is read.
            let head = h.stream_head(path);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/event-stream"), "{head}");
            continue;
        }
        let concrete = path.replace("{conf}", "c").replace("{ep}", "e");
        let body = (method != "get" && method != "delete").then(|| json!({}));
        let r = h.call(&method.to_uppercase(), &concrete, body);
        assert_ne!(r.status, 405, "{method} {path} not routed");
        if r.status == 404 {
            assert_ne!(
                r.error_code(),
                "no_such_route",
                "{method} {path} not routed"
            );
        }
    }
    // the documented request and response schemas exist
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "CreateConference",
        "Created",
        "EndpointCreated",
        "TracksBody",
        "SubscriptionsBody",
        "AddressBody",
        "ConferenceState",
        "ConferenceList",
        "ConferenceSettings",
        "ReceiveJson",
        "SpeakerEvent",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
}
