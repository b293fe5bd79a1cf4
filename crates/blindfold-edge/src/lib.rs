//! `blindfold edge`: where browsers enter a blindfold call.
//!
//! A browser cannot set SRTP keys: its media always goes over DTLS-SRTP to the next hop,
//! with SFrame (its encoded-frame transform) as the end-to-end layer inside. The edge is
//! that next hop. Per browser it runs one str0m peer connection (ICE, DTLS, SRTP: the hop
//! key) and one forwarder endpoint, latched with the ICE credentials the signalling
//! service gave the browser, exactly as a native participant latches its own; RTP moves
//! between the two with the hop's SRTP removed or added and nothing else opened.
//!
//! Owns: the HTTP API browsers hand their SDP offer to (`POST /v1/sessions`), the
//! sessions, their sockets, hop keys (inside str0m). Must never touch a group key, the
//! call secret or an MLS message: its dependency graph holds no e2ee, MLS or SFrame crate
//! (`tests/edge_keyless.rs` reads it from `cargo metadata`).

pub mod bridge;
pub mod metrics;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::session::{ForwarderLeg, Session};

/// Largest session request (an SDP offer with a few dozen m-lines is ~20 KB).
const MAX_REQUEST: usize = 64 * 1024;

/// Errors of the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A socket could not be bound or connected.
    #[error("binding a socket: {0}")]
    Bind(#[source] std::io::Error),
    /// The runtime or its thread could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The browser's SDP was refused.
    #[error("SDP: {0}")]
    Sdp(String),
}

/// `blindfold edge` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// HTTP address browsers post their SDP offers to (port 0 picks one).
    #[arg(long, env = "BLINDFOLD_EDGE_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Address the browser-facing UDP sockets bind and advertise as ICE host candidate.
    #[arg(long, env = "BLINDFOLD_EDGE_MEDIA_IP", default_value = "127.0.0.1")]
    pub media_ip: IpAddr,
    /// A forwarder media address sessions may connect to (repeatable). A session naming
    /// any other address is refused, so the edge cannot be aimed at a stranger.
    #[arg(
        long = "forwarder",
        env = "BLINDFOLD_EDGE_FORWARDERS",
        value_delimiter = ',',
        required = true
    )]
    pub forwarders: Vec<SocketAddr>,
    /// Most browser sessions at once.
    #[arg(long, env = "BLINDFOLD_EDGE_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: u64,
}

/// What a browser posts: its SDP offer and the forwarder endpoint signalling gave it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The browser's SDP offer.
    pub offer: String,
    /// The endpoint's ICE credentials (from signalling's `joined`).
    pub ice: IceJson,
    /// The forwarder's media addresses (from signalling's `joined`); the first one the
    /// edge is allowed to use is taken.
    pub candidates: Vec<CandidateJson>,
}

/// ICE credentials of a forwarder endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceJson {
    /// The endpoint's ufrag.
    pub ufrag: String,
    /// The endpoint's pwd.
    pub pwd: String,
}

/// A forwarder media address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateJson {
    /// IP address.
    pub ip: String,
    /// UDP port.
    pub port: u16,
}

/// The edge's answer.
#[derive(Debug, Serialize)]
pub struct SessionResponse {
    /// The SDP answer for the browser.
    pub answer: String,
}

struct Shared {
    args: EdgeArgs,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// A running edge on its own thread and runtime.
pub struct EdgeServer {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EdgeServer {
    /// Binds `args.listen` and serves until [`EdgeServer::stop`].
    pub fn start(args: &EdgeArgs) -> Result<Self, EdgeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("edge")
            .enable_all()
            .build()
            .map_err(EdgeError::Runtime)?;
        let std_listener = std::net::TcpListener::bind(args.listen).map_err(EdgeError::Bind)?;
        std_listener
            .set_nonblocking(true)
            .map_err(EdgeError::Bind)?;
        let addr = std_listener.local_addr().map_err(EdgeError::Bind)?;
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(EdgeError::Bind)?
        };
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            args: args.clone(),
            metrics: metrics.clone(),
            stop: stop_rx.clone(),
        });
        let app = router(shared);
        let mut stop_http = stop_rx;
        let thread = std::thread::Builder::new()
            .name("edge-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop_http.changed().await;
                        })
                        .await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(EdgeError::Runtime)?;
        tracing::info!("edge started");
        Ok(Self {
            addr,
            metrics,
            stop: stop_tx,
            thread: Some(thread),
        })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The edge's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ends every session and the HTTP server.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EdgeServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v1/sessions", post(create_session).options(preflight))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .layer(axum::middleware::map_response(cors))
        .with_state(shared)
}

/// The call page is served by the signalling service, another origin: allow its
/// requests. No cookie or credential is involved (the request carries what it proves).
async fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    resp
}

async fn preflight(_: Method) -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

fn refuse(s: &Shared, code: StatusCode, msg: &str) -> Response {
    s.metrics.sessions_refused.fetch_add(1, Ordering::Relaxed);
    (code, msg.to_string()).into_response()
}

async fn create_session(
    State(s): State<Arc<Shared>>,
    body: Result<Json<SessionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(req)) => req,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(
                &s,
                StatusCode::PAYLOAD_TOO_LARGE,
                "session request too large",
            );
        }
        Err(_) => return refuse(&s, StatusCode::BAD_REQUEST, "malformed session request"),
    };
    if s.metrics.sessions_open.load(Ordering::Relaxed) >= s.args.max_sessions {
        return refuse(
            &s,
            StatusCode::SERVICE_UNAVAILABLE,
            "edge full (max-sessions)",
        );
    }
    let ufrag_ok = (4..=256).contains(&req.ice.ufrag.len());
    let pwd_ok = (22..=256).contains(&req.ice.pwd.len());
    if !ufrag_ok || !pwd_ok {
        return refuse(&s, StatusCode::BAD_REQUEST, "bad ICE credentials");
    }
    let forwarder = req
        .candidates
        .iter()
        .filter_map(|c| Some(SocketAddr::new(c.ip.parse().ok()?, c.port)))
        .find(|a| s.args.forwarders.contains(a));
    let Some(forwarder) = forwarder else {
        return refuse(&s, StatusCode::FORBIDDEN, "no allowed forwarder address");
    };
    let leg = ForwarderLeg {
        addr: forwarder,
        ufrag: req.ice.ufrag,
        pwd: req.ice.pwd,
    };
    match Session::create(s.args.media_ip, &req.offer, leg, s.metrics.clone()).await {
        Ok((session, answer)) => {
            s.metrics.sessions_created.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(session.run(s.stop.clone()));
            Json(SessionResponse { answer }).into_response()
        }
        Err(EdgeError::Sdp(e)) => {
            tracing::debug!(error = %e, "offer refused");
            refuse(&s, StatusCode::BAD_REQUEST, "SDP offer refused")
        }
        Err(e) => {
            tracing::warn!(error = %e, "session failed to start");
            refuse(
                &s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "session failed to start",
            )
        }
    }
}
