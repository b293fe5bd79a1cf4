//! The control API server alone, over real HTTP on loopback: a `ControlServer` whose
//! shards are stood in for by plain crossbeam channels, so every broadcast `Update` can be
//! asserted, and a raw HTTP helper for the requests a well-behaved client never sends
//! (bad JSON, wrong types, no token). Well-formed calls go through the typed client.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use blindfold::control::blocking;
use blindfold::forwarder::config::ServeArgs;
use blindfold::forwarder::control::{ControlContext, ControlServer};
use blindfold::forwarder::metrics;
use blindfold::forwarder::{ShardEvent, ShardLink, ShardSet};
use blindfold::proto::table::{ConfRoutes, Update};
use serde_json::Value;

/// The bearer token [`config`] sets.
pub const TOKEN: &str = "test-token-0123456789";

/// A control server on loopback port 0 whose one "shard" is a channel.
pub struct Harness {
    /// The typed client, for well-formed calls.
    pub client: blocking::Client,
    pub server: Option<ControlServer>,
    pub base: String,
    pub agent: ureq::Agent,
    pub token: Option<String>,
    pub updates: crossbeam_channel::Receiver<Update>,
    pub events: crossbeam_channel::Sender<ShardEvent>,
    pub candidates: Vec<SocketAddr>,
    _poll: mio::Poll,
}

/// Defaults with [`TOKEN`].
pub fn config() -> ServeArgs {
    ServeArgs {
        control_token: Some(TOKEN.into()),
        ..ServeArgs::default()
    }
}

/// Serves the control API alone with `config`.
pub fn start(config: ServeArgs) -> Harness {
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
    let base = format!("http://{}", server.local_addr());
    let client = blocking::Client::new(&base, token.as_deref()).unwrap();
    Harness {
        client,
        base,
        server: Some(server),
        agent,
        token,
        updates,
        events,
        candidates,
        _poll: poll,
    }
}

/// A raw answer.
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts an error response in the API's JSON shape and returns its code.
    pub fn error_code(&self) -> String {
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
    pub fn server(&self) -> &ControlServer {
        self.server.as_ref().unwrap()
    }

    pub fn raw(
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

    /// The status line and headers of an authenticated `GET path` whose body never ends
    /// (an event stream), read over a raw socket.
    pub fn stream_head(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.server().local_addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = self.auth().unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// Declares a `len`-byte JSON body with `Expect: 100-continue` over a raw socket and
    /// reads the answer without sending the body (a client sending megabytes the server
    /// refuses would race the server's close and see a reset instead of the answer).
    pub fn oversize_with_expect_continue(&self, path: &str, len: usize) -> Resp {
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

    pub fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
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

    pub fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    /// Every update broadcast so far (broadcasts happen before the response is sent).
    pub fn drain(&self) -> Vec<Update> {
        self.updates.try_iter().collect()
    }

    pub fn conference(&self, id: &str) {
        self.client.create_conference(Some(id)).unwrap();
    }

    /// Creates an endpoint and returns its (slot, generation) from the Endpoint update.
    pub fn endpoint(&self, conf: &str, id: &str) -> (u32, u32) {
        self.drain();
        self.client.create_endpoint(conf, Some(id)).unwrap();
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

pub fn routes_of(u: &Update) -> Arc<ConfRoutes> {
    match u {
        Update::Routes {
            routes: Some(r), ..
        } => r.clone(),
        other => panic!("expected Routes, got {other:?}"),
    }
}

pub fn subscribers(r: &ConfRoutes, ssrc: u32) -> Vec<u32> {
    let mut s = r.get(ssrc).unwrap().subscribers.to_vec();
    s.sort_unstable();
    s
}
