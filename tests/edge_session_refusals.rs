//! The edge refuses session requests it should not serve, with a clear status, counts
//! them, and starts nothing for them: malformed JSON, unknown fields, bad ICE credentials,
//! a forwarder address it was not given (it cannot be aimed at a stranger), an SDP that is
//! not an offer, an oversized body. A well-formed request for an allowed forwarder with a
//! garbage offer is refused too; nothing here needs a browser.

mod common;

use blindfold::edge::{EdgeArgs, EdgeServer};
use serde_json::json;

fn post(url: &str, body: &str) -> u16 {
    match ureq::post(url)
        .header("content-type", "application/json")
        .send(body)
    {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(c)) => c,
        Err(e) => panic!("request failed: {e}"),
    }
}

#[test]
fn bad_session_requests_are_refused_and_counted() {
    let allowed = "127.0.0.1:40000".parse().unwrap();
    let edge = EdgeServer::start(&EdgeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        forwarders: vec![allowed],
        max_sessions: 4,
    })
    .unwrap();
    let url = format!("http://{}/v1/sessions", edge.local_addr());
    let ice = json!({"ufrag": "abcdabcd", "pwd": "0123456789abcdefghijklmn"});
    let cand = |port: u16| json!([{"ip": "127.0.0.1", "port": port}]);
    let cases = [
        ("not json".to_string(), 400),
        (json!({"offer": "v=0"}).to_string(), 400),
        (
            json!({"offer": "v=0", "ice": ice, "candidates": cand(40000), "extra": 1}).to_string(),
            400,
        ),
        (
            json!({"offer": "v=0", "ice": {"ufrag": "a", "pwd": "b"}, "candidates": cand(40000)})
                .to_string(),
            400,
        ),
        (
            json!({"offer": "v=0", "ice": ice, "candidates": cand(40001)}).to_string(),
            403,
        ),
        (
            json!({"offer": "not an sdp", "ice": ice, "candidates": cand(40000)}).to_string(),
            400,
        ),
    ];
    for (body, want) in &cases {
        assert_eq!(post(&url, body), *want, "{body}");
    }
    let big = "x".repeat(100 * 1024);
    assert_eq!(post(&url, &json!({"offer": big}).to_string()), 413);
    use std::sync::atomic::Ordering::Relaxed;
    let m = edge.metrics();
    assert_eq!(m.sessions_refused.load(Relaxed), cases.len() as u64 + 1);
    assert_eq!(m.sessions_created.load(Relaxed), 0);
    edge.stop();
}
