//! Control API drain: after SIGTERM new conferences get 503 `draining`, running ones go
//! on and can still change.

mod common;

use serde_json::json;

use common::control::*;

#[test]
fn drain_refuses_new_conferences_only() {
    let h = start(config());
    h.conference("c");
    h.server().begin_drain();
    let r = h.call("POST", "/v1/conferences", Some(json!({})));
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "draining");
    let r = h.raw("GET", "/healthz", None, None, None);
    assert_eq!((r.status, r.text.as_str()), (503, "draining"));
    // the running conference goes on and can still change
    h.endpoint("c", "late-joiner");
    assert_eq!(h.server().conference_count(), 1);
    assert!(h.get("/metrics").text.contains("\nblindfold_draining 1\n"));
    assert_eq!(h.call("DELETE", "/v1/conferences/c", None).status, 204);
    assert_eq!(h.server().conference_count(), 0);
}
