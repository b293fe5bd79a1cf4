//! Control API endpoints: creation hands out ICE credentials and the candidates, and the
//! shards receive the endpoint then its routes, in that order.

mod common;

use blindfold::proto::table::IngressLimits;
use blindfold::proto::table::Update;
use serde_json::json;

use common::control::*;

#[test]
fn endpoint_creation_hands_out_credentials_and_updates_in_order() {
    let h = start(config());
    h.conference("c");
    h.drain();
    let r = h.call("POST", "/v1/conferences/c/endpoints", Some(json!({})));
    assert_eq!(r.status, 201);
    let v = r.json();
    let ufrag = v["ice"]["ufrag"].as_str().unwrap();
    let pwd = v["ice"]["pwd"].as_str().unwrap();
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    assert_eq!(ufrag.len(), 16);
    assert!(pwd.len() >= 22);
    assert!(ufrag.chars().chain(pwd.chars()).all(ice_char));
    let c = h.candidates[0];
    assert_eq!(
        v["candidates"],
        json!([{"ip": c.ip().to_string(), "port": c.port()}])
    );
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()));

    let ups = h.drain();
    assert_eq!(ups.len(), 2, "{ups:?}");
    let cfg = config();
    match &ups[0] {
        Update::Endpoint { ice, limits, .. } => {
            let ice = ice.as_ref().unwrap();
            assert_eq!(&*ice.ufrag, ufrag);
            assert_eq!(&*ice.pwd, pwd.as_bytes());
            assert_eq!(
                *limits,
                IngressLimits {
                    packets_per_sec: cfg.ingress_pps,
                    bytes_per_sec: cfg.ingress_bps,
                    burst_ms: cfg.ingress_burst_ms,
                }
            );
        }
        other => panic!("expected Endpoint first, got {other:?}"),
    }
    assert!(routes_of(&ups[1]).is_empty());

    h.endpoint("c", "bob");
    let r = h.call(
        "POST",
        "/v1/conferences/c/endpoints",
        Some(json!({"id": "bob"})),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "endpoint_exists");
    let r = h.call(
        "POST",
        "/v1/conferences/nope/endpoints",
        Some(json!({"id": "bob"})),
    );
    assert_eq!(r.status, 404);
    let r = h.call("DELETE", "/v1/conferences/c/endpoints/nobody", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "endpoint_not_found");
}
