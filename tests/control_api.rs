//! The control API over real HTTP on loopback: the contract of issue 2 (paths, bodies,
//! status codes, JSON errors), authentication, limits, drain, the OpenAPI document, and
//! the exact `Update`s the shards receive. The shards are stood in for by plain crossbeam
//! channels, so every broadcast can be asserted.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blindfold::forwarder::config::ServeArgs;
use blindfold::forwarder::control::{ControlContext, ControlServer};
use blindfold::forwarder::metrics;
use blindfold::forwarder::{ShardEvent, ShardLink, ShardSet};
use blindfold::proto::table::{ConfRoutes, IngressLimits, Latch, Update};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

struct Harness {
    server: Option<ControlServer>,
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    updates: crossbeam_channel::Receiver<Update>,
    events: crossbeam_channel::Sender<ShardEvent>,
    candidates: Vec<SocketAddr>,
    _poll: mio::Poll,
}

fn config() -> ServeArgs {
    ServeArgs {
        control_token: Some(TOKEN.into()),
        ..ServeArgs::default()
    }
}

fn start(config: ServeArgs) -> Harness {
    let poll = mio::Poll::new().unwrap();
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
    let (tx, updates) = crossbeam_channel::unbounded();
    let (events, events_rx) = crossbeam_channel::unbounded();
    let candidates: Vec<SocketAddr> = vec!["192.0.2.10:10000".parse().unwrap()];
    let token = config.control_token.clone();
    let ctx = ControlContext {
        config: Arc::new(config),
        shards: ShardSet::new(vec![ShardLink { updates: tx, waker }]),
        metrics: Arc::new(metrics::new_shards(1)),
        events: events_rx,
        candidates: candidates.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = ControlServer::spawn(listener, ctx).unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    Harness {
        base: format!("http://{}", server.local_addr()),
        server: Some(server),
        agent,
        token,
        updates,
        events,
        candidates,
        _poll: poll,
    }
}

struct Resp {
    status: u16,
    content_type: String,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts an error response in the API's JSON shape and returns its code.
    fn error_code(&self) -> String {
        assert!(
            self.content_type.starts_with("application/json"),
            "error not JSON: {} {:?}",
            self.status,
            self.text
        );
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["code"].as_str().unwrap().to_owned()
    }
}

impl Harness {
    fn server(&self) -> &ControlServer {
        self.server.as_ref().unwrap()
    }

    fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Resp {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        if let Some(ct) = content_type {
            b = b.header("Content-Type", ct);
        }
        let resp = match body {
            Some(body) => self.agent.run(b.body(body).unwrap()),
            None => self.agent.run(b.body(()).unwrap()),
        };
        let mut resp = resp.unwrap();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Resp {
            status: resp.status().as_u16(),
            content_type,
            text: resp.body_mut().read_to_string().unwrap(),
        }
    }

    /// Declares a `len`-byte JSON body with `Expect: 100-continue` over a raw socket and
    /// reads the answer without sending the body (a client sending megabytes the server
    /// refuses would race the server's close and see a reset instead of the answer).
    fn oversize_with_expect_continue(&self, path: &str, len: usize) -> Resp {
        use std::io::{Read, Write};
        let addr = self.server().local_addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = self.auth().unwrap_or_default();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default();
        Resp {
            status,
            content_type,
            text: body.to_owned(),
        }
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let auth = self.auth();
        match body {
            Some(v) => self.raw(
                method,
                path,
                auth.as_deref(),
                Some("application/json"),
                Some(v.to_string()),
            ),
            None => self.raw(method, path, auth.as_deref(), None, None),
        }
    }

    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    /// Every update broadcast so far (broadcasts happen before the response is sent).
    fn drain(&self) -> Vec<Update> {
        self.updates.try_iter().collect()
    }

    fn conference(&self, id: &str) {
        let r = self.call("POST", "/v1/conferences", Some(json!({ "id": id })));
        assert_eq!(r.status, 201, "{}", r.text);
    }

    /// Creates an endpoint and returns its (slot, generation) from the Endpoint update.
    fn endpoint(&self, conf: &str, id: &str) -> (u32, u32) {
        self.drain();
        let r = self.call(
            "POST",
            &format!("/v1/conferences/{conf}/endpoints"),
            Some(json!({ "id": id })),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        match self.drain().first() {
            Some(Update::Endpoint { ep, generation, .. }) => (*ep, *generation),
            other => panic!("expected an Endpoint update, got {other:?}"),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

fn routes_of(u: &Update) -> Arc<ConfRoutes> {
    match u {
        Update::Routes {
            routes: Some(r), ..
        } => r.clone(),
        other => panic!("expected Routes, got {other:?}"),
    }
}

fn subscribers(r: &ConfRoutes, ssrc: u32) -> Vec<u32> {
    let mut s = r.get(ssrc).unwrap().subscribers.to_vec();
    s.sort_unstable();
    s
}

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

#[test]
fn declared_and_stun_latches_reach_shards_and_show_in_get() {
    let h = start(config());
    h.conference("c");
    let (a, gen_a) = h.endpoint("c", "a");
    let (b, gen_b) = h.endpoint("c", "b");

    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/b/address",
        Some(json!({"ip": "127.0.0.1", "port": 40000})),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let ups = h.drain();
    assert!(
        matches!(
            ups.as_slice(),
            [Update::Address { ep, generation, addr: Some((addr, Latch::Declared)) }]
                if *ep == b && *generation == gen_b && *addr == "127.0.0.1:40000".parse().unwrap()
        ),
        "{ups:?}"
    );

    // a shard reports a verified STUN check for a
    let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let consent_until = Instant::now() + Duration::from_secs(30);
    h.events
        .send(ShardEvent::Latched {
            ep: a,
            generation: gen_a,
            addr,
            consent_until,
        })
        .unwrap();
    let u = h.updates.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(
            u,
            Update::Address { ep, generation, addr: Some((got, Latch::Stun { consent_until: c })) }
                if ep == a && generation == gen_a && got == addr && c == consent_until
        ),
        "{u:?}"
    );
    // a stale generation is ignored
    h.events
        .send(ShardEvent::Latched {
            ep: a,
            generation: gen_a.wrapping_sub(1),
            addr: "127.0.0.1:50001".parse().unwrap(),
            consent_until,
        })
        .unwrap();
    assert!(h.updates.recv_timeout(Duration::from_millis(300)).is_err());

    let r = h.get("/v1/conferences/c");
    assert!(
        !r.text.contains("127.0.0.1"),
        "addresses never leave: {}",
        r.text
    );
    let v = r.json();
    let ep_a = &v["endpoints"][0];
    assert_eq!(ep_a["latched"], true);
    let ms = ep_a["consent_expires_in_ms"].as_u64().unwrap();
    assert!(ms > 20_000 && ms <= 30_000, "{ms}");
    assert_eq!(v["endpoints"][1]["latched"], true);
    assert_eq!(v["endpoints"][1]["consent_expires_in_ms"], Value::Null);

    let m = h.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.content_type.starts_with("text/plain"));
    assert!(m.text.contains("\nblindfold_conferences 1\n"), "{}", m.text);
    assert!(m.text.contains("\nblindfold_endpoints 2\n"));
    assert!(m.text.contains("\nblindfold_latched_endpoints 2\n"));
    assert!(m.text.contains("blindfold_rx_packets_total{shard=\"0\"} 0"));
    assert!(!m.text.contains("127.0.0.1"));
}

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
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
}
