//! blindfold-signal: the reference signalling service (`blindfold signal`): participants meet
//! here, it drives one or more forwarders through their control API, and it is the MLS
//! delivery service of every call it carries.
//!
//! Owns: the WebSocket endpoint participants connect to, join admission, each conference's
//! membership as the forwarder sees it, its placement on a forwarder, and the relay and
//! ordering of MLS messages. Must not touch: any key (it relays MLS messages as opaque hex
//! and reads only their clear header; it never tells a forwarder about keys), the disk (it
//! stores nothing), or info-level logs of ids or addresses.
//!
//! # Protocol v1 (WebSocket at `/v1/ws`, one JSON text frame per message)
//! Every frame is an object with `"v": 1` and a `"type"` tag ([`proto`] has the types).
//! Ids are ephemeral: 32 lowercase hex digits (16 octets); the service refuses anything
//! else, so it cannot be handed a user name. MLS messages are hex.
//!
//! | participant → service | meaning |
//! |---|---|
//! | `join {conference, participant, proof, key_package, join_key?}` | enter: `proof` answers the challenge, `key_package` goes to the members |
//! | `publish {tracks: [{id, kind, ssrcs}]}` | replace the tracks it sends |
//! | `subscribe {to: null \| [{participant, track}]}` | all others' tracks (default) or just these |
//! | `handshake {message, welcome?: {to, message}}` | an MLS Commit (with the Welcome for those it adds) or proposal |
//! | `receive {layer?, last_n?, top_k_audio?, pins?}` | what the forwarder chooses for it: video layer cap, last-N video plus pins, top-K audio |
//! | `leave {}` | leave; answered by `left` once the forwarder stopped sending to it |
//!
//! | service → participant | meaning |
//! |---|---|
//! | `challenge {nonce}` | first frame of every connection |
//! | `joined {you, members, ice, candidates}` | admitted: roster, ICE credentials, forwarder addresses |
//! | `member_joined {member, key_package}` / `member_left {participant}` | a join request for the group / a leave (the group commits the removal) |
//! | `tracks {participant, tracks}` | a member's tracks changed |
//! | `handshake {from, message}` / `welcome {message}` | an MLS message in the service's order / this participant's Welcome |
//! | `published {}` | the forwarder holds the tracks just published: start sending media |
//! | `moved {ice, candidates}` | the call moved off a lost forwarder: latch on this one with these credentials (the group is unchanged) |
//! | `speakers {dominant, recent}` | the forwarder's speaker detection: who holds the floor, members by recency (last-N takes the first N) |
//! | `left {}` / `error {code, message}` | leave done / request refused |
//!
//! Error codes: `bad_request`, `wrong_state`, `participant_taken`, `bad_proof`,
//! `conference_unknown` (join again with the join key), `stale_commit`, `forwarder`
//! (refused or unreachable), `capacity` (the forwarders or the service are full: retry
//! later), `source_limit` (this address holds too much), `join_timeout`.
//!
//! # Join admission (issue 14 item 6)
//! Each connection gets a fresh random challenge. A join answers it with
//! `HMAC(join key, label ‖ challenge ‖ conference ‖ participant)`, where the join key derives
//! from the call secret. The service learns the join key from the conference's first member
//! (`join_key`, sent only after a `conference_unknown` refusal) and accepts it only if the
//! conference id, `SHA-256(label ‖ join key)[..16]`, commits to it. A proof copied from
//! another connection is worthless, and a participant id that was ever in the conference is
//! refused, so a departed member's id cannot be taken over; the real member rejoins with a
//! fresh id. The join key opens nothing: admission to the *group* is the members' check of
//! the credential in the KeyPackage, which the service relays untouched.
//!
//! # Delivery service
//! The service reads the clear header of each handshake message (group id, epoch, content
//! type, [`mls_header`]) and keeps the first Commit for the next epoch, broadcasting it to
//! every member, its sender included, in one order under the conference's lock; later
//! Commits for that epoch are refused (`stale_commit`). It can stall a call (drop or delay
//! Commits: the members then stop sending, see `blindfold_e2ee::session`), and it can remove
//! a member by announcing a leave (which it could do anyway by not forwarding); it cannot
//! add anyone, keep a leaver in, or read a key. Built with the `hostile-testing` feature
//! (tests only) it drops, delays, forks and replays on command ([`hostile`]).
//!
//! Tracks may carry `extensions: {audio_level?, frame_marking?}` (RFC 8285 ids) and
//! `simulcast: true`; the service hands them to the forwarder as they are. Speaker events
//! come from each forwarder's `GET /v1/events` stream (one connection per forwarder,
//! reconnected after a second when it breaks) and go to the conference's members.
//!
//! A join creates the conference on the least loaded forwarder with room (by endpoints
//! this service holds there) and an endpoint named by the participant's ephemeral id.
//! Publishing sets the endpoint's tracks, then answers `published`; subscriptions follow
//! every change. A `leave` or a dropped WebSocket deletes the endpoint on the forwarder
//! *before* the others are told, so a leaver stops receiving at once, before the group's
//! rekey. [`service`] says how this order holds without a lock across forwarder calls.
//!
//! The service checks each forwarder's `/healthz` every `--health-interval-ms`; one that
//! fails `--health-failures` checks in a row is lost, and each of its calls moves to the
//! least loaded live forwarder: new endpoints and tracks there, then `moved` to each member
//! ([`service`] has the order).
//!
//! # Limits (strangers must not exhaust it)
//! WebSocket frames and messages are capped at [`proto::MAX_FRAME`]; connections are
//! capped in total and per source address (answered `503` and closed); a connection must
//! join within `--join-timeout-secs` and prove the call secret; one source may hold only so
//! many conferences it created; each connection's outgoing queue is bounded
//! in bytes, and a member that stops reading is disconnected (a leave) instead of growing
//! the service's memory. [`limits::Limits`] lists the flags.
//!
//! The control token travels in an `Authorization` header over plain HTTP: keep the
//! control API on a private network (or loopback), as the forwarder's docs say.

mod accept;
mod connection;
pub mod forwarders;
#[cfg(feature = "hostile-testing")]
pub mod hostile;
pub mod limits;
pub mod metrics;
pub mod mls_header;
pub mod proto;
pub mod service;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;

pub use forwarders::Forwarder;
pub use limits::Limits;
pub use service::{ConferenceView, MemberView, Service, StateView};

/// Command-line arguments of `blindfold signal`.
#[derive(clap::Args, Debug, Clone)]
pub struct SignalArgs {
    /// Address for participants' WebSockets (path /v1/ws).
    #[arg(
        long,
        default_value = "127.0.0.1:8490",
        env = "BLINDFOLD_SIGNAL_LISTEN"
    )]
    pub listen: SocketAddr,

    /// Control API base URL of a forwarder (repeat for several); conferences go to the
    /// one with the fewest endpoints that has room.
    #[arg(
        long = "forwarder",
        default_value = "http://127.0.0.1:8480",
        env = "BLINDFOLD_FORWARDERS",
        value_delimiter = ','
    )]
    pub forwarders: Vec<String>,

    /// Bearer token of the forwarders' control APIs.
    #[arg(long, env = "BLINDFOLD_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: String,

    /// Serve the service's view of all calls (ephemeral ids only) at GET /v1/state.
    /// For tests and debugging; off by default.
    #[arg(long, default_value_t = false)]
    pub debug_state: bool,

    /// Serve Prometheus counters at GET /metrics (refusals by code, connections refused,
    /// slow consumers; no id or address). Off by default: this listener faces
    /// participants.
    #[arg(long, default_value_t = false, env = "BLINDFOLD_SIGNAL_METRICS")]
    pub metrics: bool,

    /// Keep the forwarders' speaker detection on in the conferences this service
    /// creates (`false`: the forwarder reads no audio level and sends no speaker event;
    /// participants choose their videos themselves).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "BLINDFOLD_SPEAKER_DETECTION")]
    pub speaker_detection: bool,

    /// Connection, per-source and queue limits.
    #[command(flatten)]
    pub limits: Limits,

    /// How forwarders are watched.
    #[command(flatten)]
    pub health: HealthArgs,
}

/// How the service watches its forwarders (see [`service`]).
#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// How often each forwarder's `/healthz` is checked, in ms (each check must answer
    /// within this too).
    #[arg(
        long,
        default_value_t = 500,
        env = "BLINDFOLD_SIGNAL_HEALTH_INTERVAL_MS",
        value_parser = clap::value_parser!(u64).range(10..)
    )]
    pub health_interval_ms: u64,

    /// Failed checks in a row after which a forwarder is lost and its calls move to a
    /// live one.
    #[arg(
        long,
        default_value_t = 3,
        env = "BLINDFOLD_SIGNAL_HEALTH_FAILURES",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub health_failures: u32,
}

impl Default for HealthArgs {
    fn default() -> Self {
        Self {
            health_interval_ms: 500,
            health_failures: 3,
        }
    }
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Binding the listener failed.
    #[error("binding the signalling listener: {0}")]
    Bind(#[source] std::io::Error),
    /// Starting the runtime thread failed.
    #[error("starting the signalling runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No forwarder was configured.
    #[error("at least one --forwarder is needed")]
    NoForwarder,
    /// A forwarder's control client could not be built.
    #[error("forwarder control client: {0}")]
    Forwarder(#[source] blindfold_control::client::ControlError),
}

#[derive(Clone)]
struct AppState {
    service: Arc<Service>,
    debug_state: bool,
    metrics: bool,
}

/// The HTTP/WebSocket routes of the service.
fn router(service: Arc<Service>, debug_state: bool, metrics: bool) -> Router {
    Router::new()
        .route("/v1/ws", get(ws_upgrade))
        .route("/v1/state", get(state_view))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/web/{file}",
            get(
                |axum::extract::Path(file): axum::extract::Path<String>| async move {
                    web::serve(&format!("/web/{file}"))
                },
            ),
        )
        .with_state(AppState {
            service,
            debug_state,
            metrics,
        })
}

/// Read buffer of a WebSocket: what an idle connection costs, so small; frames up to
/// [`proto::MAX_FRAME`] still arrive whole.
const WS_READ_BUFFER: usize = 8 * 1024;

async fn ws_upgrade(
    State(app): State<AppState>,
    Extension(conn): Extension<Arc<limits::Guard>>,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    ws.max_message_size(proto::MAX_FRAME)
        .max_frame_size(proto::MAX_FRAME)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| connection::serve(app.service, socket, conn))
}

async fn state_view(State(app): State<AppState>) -> axum::response::Response {
    if !app.debug_state {
        return (axum::http::StatusCode::NOT_FOUND, "not enabled").into_response();
    }
    axum::Json(app.service.view()).into_response()
}

async fn metrics_text(State(app): State<AppState>) -> axum::response::Response {
    if !app.metrics {
        return (axum::http::StatusCode::NOT_FOUND, "not enabled").into_response();
    }
    let text = app
        .service
        .metrics()
        .render(app.service.admission().connections());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Relays one forwarder's speaker events to the members of its conferences, for as long
/// as the runtime runs; a broken stream is opened again after a second.
async fn relay_speakers(service: Arc<Service>, fwd: Arc<Forwarder>) {
    loop {
        match fwd.events().await {
            Ok(mut events) => loop {
                match events.next().await {
                    Ok(Some(ev)) => service.on_speakers(ev),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "speaker event stream broke");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!(error = %e, "speaker event stream refused"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A running signalling service on its own thread and runtime.
pub struct SignalServer {
    addr: SocketAddr,
    service: Arc<Service>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalServer {
    /// Binds `args.listen` (port 0 picks one) and serves until [`SignalServer::stop`].
    pub fn start(args: &SignalArgs) -> Result<Self, SignalError> {
        Self::start_with(args, None)
    }

    /// A service that misbehaves as `policy` says (tests only).
    #[cfg(feature = "hostile-testing")]
    pub fn start_hostile(
        args: &SignalArgs,
        policy: Arc<dyn hostile::Policy>,
    ) -> Result<Self, SignalError> {
        Self::start_with(args, Some(policy))
    }

    /// Relays everything relayed so far in conference `conf` again (tests only).
    #[cfg(feature = "hostile-testing")]
    pub fn replay(&self, conf: &str) -> usize {
        self.service.replay(conf)
    }

    #[cfg(feature = "hostile-testing")]
    fn start_with(
        args: &SignalArgs,
        policy: Option<Arc<dyn hostile::Policy>>,
    ) -> Result<Self, SignalError> {
        Self::start_inner(args, move |f, a| match policy {
            Some(p) => Service::new_hostile(f, a, p),
            None => Service::new(f, a),
        })
    }

    #[cfg(not(feature = "hostile-testing"))]
    fn start_with(args: &SignalArgs, _: Option<()>) -> Result<Self, SignalError> {
        Self::start_inner(args, Service::new)
    }

    fn start_inner(
        args: &SignalArgs,
        make: impl FnOnce(Vec<Forwarder>, Arc<limits::Admission>) -> Service,
    ) -> Result<Self, SignalError> {
        if args.forwarders.is_empty() {
            return Err(SignalError::NoForwarder);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("signal")
            .enable_all()
            .build()
            .map_err(SignalError::Runtime)?;
        let _guard = rt.enter();
        let forwarders = args
            .forwarders
            .iter()
            .map(|u| Forwarder::new(u, &args.control_token))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SignalError::Forwarder)?;
        let admission = limits::Admission::new(args.limits.clone());
        let service = Arc::new(
            make(forwarders, admission.clone()).with_speaker_detection(args.speaker_detection),
        );
        for f in service.forwarders() {
            rt.spawn(relay_speakers(service.clone(), f.clone()));
        }
        let std_listener = std::net::TcpListener::bind(args.listen).map_err(SignalError::Bind)?;
        std_listener
            .set_nonblocking(true)
            .map_err(SignalError::Bind)?;
        let addr = std_listener.local_addr().map_err(SignalError::Bind)?;
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(SignalError::Bind)?;
        drop(_guard);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(service.clone(), args.debug_state, args.metrics);
        let metrics = service.metrics().clone();
        rt.spawn(service.clone().watch_forwarders(
            Duration::from_millis(args.health.health_interval_ms),
            args.health.health_failures,
        ));
        let thread = std::thread::Builder::new()
            .name("signal-main".into())
            .spawn(move || {
                rt.block_on(accept::accept_loop(listener, app, admission, metrics, rx));
                // Connections and WebSockets are tasks of this runtime: end them.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(SignalError::Runtime)?;
        tracing::info!("signalling service started");
        Ok(Self {
            addr,
            service,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL participants connect to.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// The service's view of every call.
    pub fn state(&self) -> StateView {
        self.service.view()
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SignalServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
