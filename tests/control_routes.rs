//! Control API tracks and subscriptions become the shards' routes: early subscriptions
//! wait for their track, SSRC ownership is exclusive, deletes shrink the routes first.

mod common;

use blindfold::proto::table::Update;
use serde_json::json;

use common::control::*;

#[test]
fn tracks_and_subscriptions_become_routes() {
    let h = start(config());
    h.conference("c");
    let (a, _) = h.endpoint("c", "a");
    let (b, _) = h.endpoint("c", "b");
    let (c, _) = h.endpoint("c", "c");

    // b subscribes before a publishes: kept, inactive, routes nothing
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/b/subscriptions",
        Some(json!({"subscriptions": [{"endpoint": "a", "track": "cam"}]})),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let ups = h.drain();
    assert_eq!(ups.len(), 1);
    assert!(routes_of(&ups[0]).is_empty());

    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/a/tracks",
        Some(json!({"tracks": [
            {"id": "cam", "kind": "video", "ssrcs": [111, 112]},
            {"id": "mic", "kind": "audio", "ssrcs": [113]},
        ]})),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let ups = h.drain();
    assert_eq!(ups.len(), 1);
    let routes = routes_of(&ups[0]);
    assert_eq!(routes.get(111).unwrap().owner, a);
    assert_eq!(subscribers(&routes, 111), vec![b]);
    assert_eq!(subscribers(&routes, 112), vec![b]);
    assert!(subscribers(&routes, 113).is_empty());

    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/c/subscriptions",
        Some(json!({"subscriptions": [
            {"endpoint": "a", "track": "cam"},
            {"endpoint": "a", "track": "mic"},
        ]})),
    );
    assert_eq!(r.status, 204);
    let routes = routes_of(&h.drain()[0]);
    let mut bc = vec![b, c];
    bc.sort_unstable();
    assert_eq!(subscribers(&routes, 111), bc);
    assert_eq!(subscribers(&routes, 113), vec![c]);

    let v = h.get("/v1/conferences/c").json();
    assert_eq!(
        v["endpoints"][0]["tracks"],
        json!([
            {"id": "cam", "kind": "video", "ssrcs": [111, 112]},
            {"id": "mic", "kind": "audio", "ssrcs": [113]},
        ])
    );
    assert_eq!(
        v["endpoints"][1]["subscriptions"],
        json!([{"endpoint": "a", "track": "cam", "active": true}])
    );

    // an SSRC owned by another endpoint of the conference: 409, nothing broadcast
    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/b/tracks",
        Some(json!({"tracks": [{"id": "cam", "kind": "screen", "ssrcs": [112]}]})),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "ssrc_taken");
    assert!(h.drain().is_empty());

    // deleting a subscriber: the routes without it, then its removal
    let r = h.call("DELETE", "/v1/conferences/c/endpoints/b", None);
    assert_eq!(r.status, 204);
    let ups = h.drain();
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert_eq!(subscribers(&routes_of(&ups[0]), 111), vec![c]);
    assert!(matches!(ups[1], Update::RemoveEndpoint { ep } if ep == b));

    // deleting the conference: routes gone, then every endpoint
    let r = h.call("DELETE", "/v1/conferences/c", None);
    assert_eq!(r.status, 204);
    let ups = h.drain();
    assert!(matches!(ups[0], Update::Routes { routes: None, .. }));
    let mut removed: Vec<u32> = ups[1..]
        .iter()
        .map(|u| match u {
            Update::RemoveEndpoint { ep } => *ep,
            other => panic!("expected RemoveEndpoint, got {other:?}"),
        })
        .collect();
    removed.sort_unstable();
    let mut ac = vec![a, c];
    ac.sort_unstable();
    assert_eq!(removed, ac);
}
