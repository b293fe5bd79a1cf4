//! Control API authentication: a bearer token on everything but `/healthz`, compared
//! whatever the scheme's case; no token only on loopback; never an empty token.

mod common;

use blindfold::forwarder::ShardSet;
use blindfold::forwarder::config::ServeArgs;
use blindfold::forwarder::control::ControlContext;
use blindfold::forwarder::control::ControlServer;
use blindfold::forwarder::metrics;
use std::net::TcpListener;
use std::sync::Arc;

use common::control::*;

#[test]
fn auth_is_required_except_on_healthz() {
    let h = start(config());
    let r = h.raw("GET", "/v1/conferences", None, None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "unauthorized");
    let r = h.raw(
        "GET",
        "/v1/conferences",
        Some("Bearer wrong-token"),
        None,
        None,
    );
    assert_eq!(r.status, 401);
    let r = h.raw("GET", "/v1/conferences", Some(TOKEN), None, None);
    assert_eq!(r.status, 401, "a token without the Bearer scheme");
    let r = h.raw(
        "GET",
        "/metrics",
        Some(&format!("Basic {TOKEN}")),
        None,
        None,
    );
    assert_eq!(r.status, 401);
    // an unknown route does not reveal itself to an unauthenticated caller
    let r = h.raw("GET", "/v1/nothing", None, None, None);
    assert_eq!(r.status, 401);
    let r = h.raw("GET", "/healthz", None, None, None);
    assert_eq!((r.status, r.text.as_str()), (200, "ok"));
    let r = h.raw(
        "GET",
        "/v1/conferences",
        Some(&format!("bearer {TOKEN}")),
        None,
        None,
    );
    assert_eq!(r.status, 200, "the scheme is case-insensitive");
}

#[test]
fn spawn_refuses_an_open_api_off_loopback_and_an_empty_token() {
    let (_tx, rx) = crossbeam_channel::unbounded();
    let ctx = |token: Option<&str>| ControlContext {
        config: Arc::new(ServeArgs {
            control_token: token.map(Into::into),
            ..ServeArgs::default()
        }),
        shards: ShardSet::new(Vec::new()),
        metrics: Arc::new(metrics::new_shards(1)),
        events: rx.clone(),
        candidates: Vec::new(),
    };
    let any = TcpListener::bind("0.0.0.0:0").unwrap();
    let err = ControlServer::spawn(any, ctx(None)).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let lo = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = ControlServer::spawn(lo, ctx(Some(""))).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn without_a_token_loopback_is_served_openly() {
    let h = start(ServeArgs {
        control_token: None,
        ..ServeArgs::default()
    });
    let r = h.raw("POST", "/v1/conferences", None, None, None);
    assert_eq!(r.status, 201, "an empty body counts as {{}}");
}
