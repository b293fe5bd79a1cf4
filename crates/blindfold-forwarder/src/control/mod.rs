//! The control plane: the HTTP control API the signalling service drives, the
//! authoritative model of conferences behind it, and the thread that turns shards'
//! latch reports into address updates.
//!
//! Owns the control threads and the model; it is the only writer of routing state, which
//! it changes only through [`ShardSet::broadcast`]. Must not touch sockets other than its
//! own listener, must never wait on a shard, and must not log ids, addresses or tokens at
//! info level.
//!
//! ```text
//!   HTTP (tokio current-thread, own thread) ─┐
//!                                             ├─▶ Mutex<Model> ─▶ ShardSet::broadcast
//!   ShardEvent::Latched (own std thread) ────┤
//!   ShardEvent::Speech, ticker every 100 ms ─┘   speaker changes ─▶ GET /v1/events
//! ```
//! Both threads change the model and broadcast the resulting updates while holding its
//! lock, so every shard sees the changes in the order the model made them. The event
//! thread also runs the model's periodic work (dominant-speaker decisions,
//! [`Model::tick`]); the routes a decision changes reach the shards before its event
//! leaves, so a receiver reacting to the event (a key frame request for the new
//! speaker) finds the routes already in place.
//!
//! The HTTP surface, one idea per file (the wire types themselves are
//! `blindfold-control`'s, shared with the typed client):
//! - `router.rs`: every route, the fallbacks, the body limit and request deadline; the
//!   OpenAPI document comes from the same `#[utoipa::path]` attributes through
//!   `utoipa_axum::routes!`, so it cannot miss a route.
//! - `handlers/`: one file per resource (conferences, endpoints, meta).
//! - `extract.rs`, `auth.rs`, `error.rs`: JSON body and path extractors, bearer tokens,
//!   and error answers.
//! - `openapi.rs`: the document's frame and the shared error responses.
//!
//! # Status codes
//! Every error is `{"error": {"code", "message"}}`; the code fixes the status
//! ([`blindfold_control::ErrorCode`]):
//!
//! | status | `error.code` | when |
//! |---|---|---|
//! | 400 | `invalid_json`, `invalid_body` | malformed JSON; unknown field, missing field or wrong type |
//! | 400 | `invalid_id` | an id (path or body) that is not 1..=64 of `[A-Za-z0-9_-]` |
//! | 401 | `unauthorized` | missing or wrong bearer token (everything but `/healthz`) |
//! | 404 | `conference_not_found`, `endpoint_not_found`, `no_such_route` | |
//! | 405 | `method_not_allowed` | |
//! | 408 | `request_timeout` | the request took longer than 10 s |
//! | 409 | `conference_exists`, `endpoint_exists`, `ssrc_taken` | the id or SSRC is taken |
//! | 409 | `too_many_conferences`, `too_many_endpoints` | a count limit is reached; retry after deletions |
//! | 413 | `payload_too_large` | body over the limit |
//! | 415 | `unsupported_media_type` | a non-empty body without `Content-Type: application/json` |
//! | 422 | `too_many_tracks`, `too_many_ssrcs`, `too_many_subscriptions` | the body itself exceeds a limit |
//! | 422 | `invalid_value` | duplicate track id, SSRC or subscription; empty track; self-subscription; non-unicast address or port 0 |
//! | 503 | `draining` | `POST /v1/conferences` after SIGTERM |
//!
//! An empty request body counts as `{}`.
//!
//! # Authentication
//! Every request but `/healthz` needs `Authorization: Bearer TOKEN` (`--control-token` or
//! `BLINDFOLD_CONTROL_TOKEN`); tokens are compared as SHA-256 digests in constant time.
//! Without a token the API is served only on a loopback address (with a warning: any
//! local process can drive it); [`ControlServer::spawn`] refuses a non-loopback listener
//! without one, and an empty token always.

mod auth;
mod error;
mod extract;
#[cfg(any(test, feature = "fuzzing"))]
mod fuzz;
mod handlers;
mod openapi;
mod router;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::config::ServeArgs;
use crate::metrics::AllShards;
use crate::{ShardEvent, ShardSet};
use blindfold_proto::model::{Model, ModelError};
use blindfold_proto::table::Update;
use std::sync::atomic::AtomicU64;

pub use error::ApiError;
#[cfg(any(test, feature = "fuzzing"))]
pub use fuzz::fuzz_json;
pub use router::openapi;

/// Smallest request body limit; raised when the configured limits allow bigger bodies.
pub const MIN_BODY_LIMIT: usize = 64 * 1024;
/// How long in-flight requests may take to finish once [`ControlServer::stop`] is called.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Most shard events folded into one broadcast.
const EVENT_BATCH: usize = 256;
/// How often the event thread runs the model's periodic work.
const TICK: Duration = Duration::from_millis(100);
/// Speaker events buffered for each listener of `GET /v1/events`; one that falls this
/// far behind gets the current state again.
const SPEAKER_CHANNEL: usize = 1024;

/// Everything the control plane needs from the process that starts it.
pub struct ControlContext {
    /// Limits, token, ingress limits.
    pub config: Arc<ServeArgs>,
    /// The shards' inboxes.
    pub shards: ShardSet,
    /// The shards' counters, rendered at `/metrics`.
    pub metrics: Arc<AllShards>,
    /// Verified latches and consent refreshes from the shards.
    pub events: crossbeam_channel::Receiver<ShardEvent>,
    /// Advertised media address(es) handed to clients as candidates.
    pub candidates: Vec<SocketAddr>,
}

/// State shared by the HTTP handlers, the event thread and [`ControlServer`].
pub(crate) struct Shared {
    model: Mutex<Model>,
    shards: ShardSet,
    metrics: Arc<AllShards>,
    candidates: Vec<SocketAddr>,
    /// SHA-256 of the bearer token; `None` serves unauthenticated (loopback only).
    token: Option<[u8; 32]>,
    draining: AtomicBool,
    body_limit: usize,
    /// Speaker changes, to every listener of `GET /v1/events`.
    speakers: tokio::sync::broadcast::Sender<blindfold_control::SpeakerEvent>,
    /// Set when the server stops, which ends the event streams.
    stop: tokio::sync::watch::Sender<bool>,
    /// Speaker changes decided so far (for `/metrics`).
    speaker_changes: AtomicU64,
}

impl Shared {
    /// The model. A panic while holding it cannot leave it half-changed (operations
    /// check before they mutate), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one model operation and broadcasts its updates in one call, under the lock.
    fn change<T>(
        &self,
        op: impl FnOnce(&mut Model) -> Result<(T, Vec<Update>), ModelError>,
    ) -> Result<T, ModelError> {
        let mut model = self.lock();
        let (out, updates) = op(&mut model)?;
        if !updates.is_empty() {
            self.shards.broadcast(&updates);
        }
        Ok(out)
    }

    /// Records latches and consent refreshes and hands the addresses to every shard.
    fn on_events(&self, events: impl IntoIterator<Item = ShardEvent>) {
        let mut model = self.lock();
        let mut updates = Vec::new();
        let mut stale = 0usize;
        let now = std::time::Instant::now();
        for ev in events {
            match ev {
                ShardEvent::Latched {
                    ep,
                    generation,
                    addr,
                    consent_until,
                } => {
                    let ups = model.latched(ep, generation, addr, consent_until, now);
                    stale += usize::from(ups.is_empty());
                    updates.extend(ups);
                }
                ShardEvent::Consent {
                    ep,
                    generation,
                    addr,
                    consent_until,
                } => match model.consent(ep, generation, addr, consent_until) {
                    Some(u) => updates.push(u),
                    None => stale += 1,
                },
                ShardEvent::Speech {
                    conf,
                    ep,
                    generation,
                    activity,
                } => model.speech(conf, ep, generation, activity, now),
            }
        }
        if !updates.is_empty() {
            self.shards.broadcast(&updates);
        }
        debug!(latched = updates.len(), stale, "shard events applied");
    }

    /// The model's periodic work: dominant-speaker decisions, their route updates (to
    /// the shards, under the lock) and then their events (to the listeners).
    fn on_tick(&self) {
        let events = {
            let mut model = self.lock();
            let (updates, events) = model.tick(std::time::Instant::now());
            if !updates.is_empty() {
                self.shards.broadcast(&updates);
            }
            events
        };
        for ev in events {
            self.speaker_changes.fetch_add(1, Ordering::Relaxed);
            if let Some(ev) = speaker_event(ev) {
                // No listener is no error: the signalling service may connect later and
                // will get the current state first.
                let _ = self.speakers.send(ev);
            }
        }
    }
}

/// The wire's speaker event from the model's (none without a dominant speaker).
pub(crate) fn speaker_event(
    ev: blindfold_proto::model::SpeakerEvent,
) -> Option<blindfold_control::SpeakerEvent> {
    Some(blindfold_control::SpeakerEvent {
        conference: ev.conference,
        dominant: ev.dominant?,
        recent: ev.recent,
    })
}

/// Request body limit for `config`: room for the largest allowed subscription or track
/// set with 64-character ids, and never below [`MIN_BODY_LIMIT`].
fn body_limit(config: &ServeArgs) -> usize {
    let subs = config.max_subscriptions_per_endpoint.saturating_mul(192);
    let tracks = config.max_tracks_per_endpoint.saturating_mul(
        config
            .max_ssrcs_per_track
            .saturating_mul(12)
            .saturating_add(160),
    );
    MIN_BODY_LIMIT.max(subs.max(tracks).saturating_add(1024))
}

/// The running control plane: the HTTP server thread and the shard-event thread.
pub struct ControlServer {
    addr: SocketAddr,
    /// The control thread's runtime, for background tasks (the cluster registry).
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    stop_events: Option<crossbeam_channel::Sender<()>>,
    events: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Serves the API on `listener` from its own thread running a tokio current-thread
    /// runtime, and drains shard events on another. Returns once serving.
    ///
    /// Fails with `InvalidInput` when no token is configured and `listener` is not on a
    /// loopback address, or when the token is empty.
    pub fn spawn(listener: TcpListener, ctx: ControlContext) -> std::io::Result<ControlServer> {
        use std::io::{Error, ErrorKind};
        let addr = listener.local_addr()?;
        let config = &ctx.config;
        let token = match config.control_token.as_deref() {
            Some("") => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "the control token is empty",
                ));
            }
            Some(t) => Some(auth::token_digest(t)),
            None if addr.ip().is_loopback() => {
                warn!(
                    "control API has no token: any local process can drive it \
                     (set --control-token or BLINDFOLD_CONTROL_TOKEN)"
                );
                None
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "refusing to serve the control API on a non-loopback address without \
                     --control-token",
                ));
            }
        };
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            model: Mutex::new(Model::new(config.limits(), config.ingress_limits())),
            shards: ctx.shards,
            metrics: ctx.metrics,
            candidates: ctx.candidates,
            token,
            draining: AtomicBool::new(false),
            body_limit: body_limit(config),
            speakers: tokio::sync::broadcast::channel(SPEAKER_CHANNEL).0,
            stop: tokio::sync::watch::Sender::new(false),
            speaker_changes: AtomicU64::new(0),
        });
        let router = router::router(shared.clone());
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = std::thread::Builder::new()
            .name("bf-control".into())
            .spawn(move || serve(listener, router, shutdown_rx, ready_tx))?;
        let runtime = match ready_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let _ = server.join();
                return Err(e);
            }
            Err(_) => {
                let _ = server.join();
                return Err(Error::other("the control thread exited before serving"));
            }
        };
        let mut this = ControlServer {
            addr,
            runtime,
            shared: shared.clone(),
            shutdown,
            server: Some(server),
            stop_events: None,
            events: None,
        };
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let events = ctx.events;
        // On failure `this` is dropped, which stops the server thread.
        let handle = std::thread::Builder::new()
            .name("bf-control-ev".into())
            .spawn(move || event_loop(&shared, &events, &stop_rx))?;
        this.stop_events = Some(stop_tx);
        this.events = Some(handle);
        info!(authenticated = token.is_some(), "control API serving");
        Ok(this)
    }

    /// The address the API is served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control thread's tokio runtime: background control-plane tasks (the cluster
    /// registry) run there, beside the API, never on a shard.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// SIGTERM semantics: from now on `POST /v1/conferences` answers 503 and `/healthz`
    /// 503 `draining`; existing conferences, their endpoints and changes to them go on.
    pub fn begin_drain(&self) {
        if !self.shared.draining.swap(true, Ordering::AcqRel) {
            info!("control API draining: no new conferences");
        }
    }

    /// Conferences still present (the drain loop waits for 0 or a deadline).
    pub fn conference_count(&self) -> usize {
        self.shared.lock().conference_count()
    }

    /// Stops the server and the event thread; joins them. In-flight requests get
    /// a second to finish.
    pub fn stop(self) {
        // Drop does the work, so a server that is merely dropped stops the same way.
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Event streams never finish on their own: end them first, so connections can
        // close gracefully.
        self.shared.stop.send_replace(true);
        let _ = self.shutdown.send(true);
        self.stop_events.take();
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        if let Some(h) = self.events.take() {
            let _ = h.join();
        }
        debug!("control API stopped");
    }
}

/// The HTTP thread: a current-thread runtime serving `router` until `shutdown` is set.
fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: tokio::sync::watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<std::io::Result<tokio::runtime::Handle>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(tokio::runtime::Handle::current()));
        accept_loop(listener, router, shutdown).await;
    });
}

/// Most control connections served at once; more are closed on accept. The signalling
/// service needs a handful, so this only bounds what a misbehaving client can hold.
const MAX_CONNECTIONS: usize = 256;
/// A connection must deliver a request's headers this soon (slow-loris bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections and serves each with hyper's HTTP/1 (the axum router as the
/// service), under a connection cap, a header-read timeout and, through the router, a
/// whole-request deadline. Returns on shutdown after letting connections finish for
/// [`STOP_GRACE`].
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!("control API: connection cap reached, closing a new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stop = shutdown.clone();
        conns.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
                }
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow with history.
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// The event thread: folds bursts of shard events into one broadcast each, and runs the
/// model's periodic work every [`TICK`], until `stop` is dropped.
fn event_loop(
    shared: &Shared,
    events: &crossbeam_channel::Receiver<ShardEvent>,
    stop: &crossbeam_channel::Receiver<()>,
) {
    let ticker = crossbeam_channel::tick(TICK);
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(ticker) -> _ => shared.on_tick(),
            recv(events) -> ev => match ev {
                Ok(ev) => {
                    let rest = events.try_iter().take(EVENT_BATCH - 1);
                    shared.on_events(std::iter::once(ev).chain(rest));
                }
                // Every shard is gone; nothing more will come.
                Err(_) => {
                    let _ = stop.recv();
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit_grows_with_limits() {
        let mut c = ServeArgs::default();
        assert!(body_limit(&c) >= MIN_BODY_LIMIT);
        c.max_subscriptions_per_endpoint = 10_000;
        assert!(body_limit(&c) >= 10_000 * 150);
    }
}
