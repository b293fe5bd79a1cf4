//! blindfold-forwarder: the keyless forwarder process (`blindfold serve`). It copies
//! SRTP/SRTCP between the endpoints of a conference without keys, reading only RTP/RTCP
//! headers.
//!
//! Owns the I/O shell around the sans-IO core: the per-core shard threads ([`shard`]),
//! the control API server ([`control`]), metrics publication ([`metrics`]), the
//! configuration ([`config`]) and, with `--redis`, its cluster registration
//! ([`registry`]). The decisions are `blindfold_proto`'s, the syscalls
//! `blindfold_udp`'s.
//!
//! Must never depend on an AEAD, HPKE or e2ee crate: the forwarder holds no media key and
//! has no code that could use one. `tests/forwarder_keyless.rs` checks this in the
//! dependency graph (`cargo metadata`).
//!
//! ```text
//!  shard thread (one per core, pinned)                     control thread (tokio)
//!  mio Poll ─▶ udp::RecvBatch ─▶ proto::Router ─┐          HTTP API, /metrics
//!                 STUN ─▶ verify, latch          │◀─Update── proto::Model
//!  udp::SendBatch ◀─ transmits ◀─────────────────┘─ShardEvent─▶ (latches, consent)
//! ```

pub mod config;
pub mod control;
pub mod metrics;
pub mod registry;
pub mod shard;

use std::net::SocketAddr;
use std::sync::Arc;

pub use blindfold_proto::route::ShardEvent;
use blindfold_proto::table::Update;
use blindfold_udp as sys;

/// One shard's inbox: its update channel and the waker of its `Poll`.
pub struct ShardLink {
    /// Ordered updates for this shard.
    pub updates: crossbeam_channel::Sender<Update>,
    /// Wakes the shard's `Poll` so updates apply without waiting for traffic.
    pub waker: Arc<mio::Waker>,
}

/// Every shard's inbox; the control thread's way to change routing state.
#[derive(Clone)]
pub struct ShardSet {
    links: Arc<[ShardLink]>,
}

impl ShardSet {
    /// Wraps the shards' inboxes.
    pub fn new(links: Vec<ShardLink>) -> Self {
        Self {
            links: links.into(),
        }
    }

    /// Sends `updates` to every shard, in order, then wakes each shard once. Never
    /// blocks: the channels are unbounded and owned by live shards (a stopped shard's
    /// closed channel is ignored).
    pub fn broadcast(&self, updates: &[Update]) {
        for link in self.links.iter() {
            for u in updates {
                let _ = link.updates.send(u.clone());
            }
            let _ = link.waker.wake();
        }
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when there are no shards.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// The forwarder could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is not one the forwarder can run with.
    #[error("configuration: {0}")]
    Config(#[source] config::ConfigError),
    /// Binding or configuring a media socket failed.
    #[error("media socket: {0}")]
    Media(#[source] std::io::Error),
    /// Binding the control API failed.
    #[error("control API: {0}")]
    Control(#[source] std::io::Error),
    /// Starting a shard thread failed.
    #[error("shard: {0}")]
    Shard(#[source] std::io::Error),
    /// The cluster registry could not be set up (a malformed `--redis` URL; an
    /// unreachable Redis is not an error: registration retries until it answers).
    #[error("cluster registry: {0}")]
    Registry(#[source] blindfold_cluster::Error),
}

/// A running forwarder: its shards and its control API. Dropping it without
/// [`Forwarder::stop`] leaves the threads running until the process exits.
pub struct Forwarder {
    media: SocketAddr,
    control: control::ControlServer,
    metrics: Arc<metrics::AllShards>,
    shards: Vec<std::thread::JoinHandle<()>>,
    wakers: Vec<Arc<mio::Waker>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    registration: Option<blindfold_cluster::RegistrationHandle>,
}

impl Forwarder {
    /// Binds the media sockets (one per shard, SO_REUSEPORT) and the control API, and
    /// starts the shard threads. A media port of 0 picks a free port shared by all shards.
    pub fn start(cfg: config::ServeArgs) -> Result<Self, StartError> {
        let cfg = cfg.validated().map_err(StartError::Config)?;
        let n = cfg.shard_count();
        let first =
            sys::bind_media_socket(cfg.media, cfg.socket_buffer).map_err(StartError::Media)?;
        let media = first.local_addr().map_err(StartError::Media)?;
        let (rcv, snd) = sys::socket_buffer_sizes(&first).map_err(StartError::Media)?;
        if rcv < cfg.socket_buffer || snd < cfg.socket_buffer {
            tracing::warn!(
                asked = cfg.socket_buffer,
                rcvbuf = rcv,
                sndbuf = snd,
                "socket buffers smaller than asked; raise net.core.rmem_max/wmem_max (scripts/tune-host.sh)"
            );
        }
        let mut sockets = vec![first];
        for _ in 1..n {
            sockets
                .push(sys::bind_media_socket(media, cfg.socket_buffer).map_err(StartError::Media)?);
        }
        // A wildcard-bound socket must learn which local address each datagram was sent
        // to, so that answers and copies leave from it (issue 9 §4c); a socket bound to
        // one address always sends from that address and needs nothing.
        if media.ip().is_unspecified() {
            let mut ok = true;
            for s in &sockets {
                if let Err(e) = sys::enable_pktinfo(s) {
                    ok = false;
                    tracing::warn!(error = %e, "no packet info on the media socket: on a multi-homed host replies may leave from another address than the one a participant sent to");
                }
            }
            if ok {
                tracing::info!(
                    "wildcard media address: replies leave from the address each datagram was sent to (packet info)"
                );
            }
        }
        // Offloads are probed, never required: a kernel without them gets the plain
        // path and a log line saying so.
        let gso = cfg.gso && sys::gso_supported(media);
        // Per socket: a socket with GRO on must get a batch with room for a coalesced
        // burst, one without it a plain batch.
        let mut gro_error = None;
        let gro: Vec<bool> = sockets
            .iter()
            .map(|s| cfg.gro && sys::enable_gro(s).map_err(|e| gro_error = Some(e)).is_ok())
            .collect();
        if let Some(e) = gro_error {
            tracing::warn!(error = %e, "UDP GRO unavailable: bursts are received one datagram at a time");
        }
        match (cfg.gso, gso) {
            (true, true) => {
                tracing::info!("UDP GSO on: a burst goes to each subscriber as one segmented send")
            }
            (true, false) => tracing::warn!(
                "UDP GSO unavailable (kernel before 4.18?): one sendmmsg entry per copy"
            ),
            (false, _) => tracing::info!("UDP GSO off (--gso false)"),
        }
        if gro.iter().any(|&g| g) {
            tracing::info!(
                "UDP GRO on: coalesced bursts are received whole, each datagram still checked on its own"
            );
        }
        let cores = if cfg.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let metrics = Arc::new(metrics::new_shards(n));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let mut links = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for (index, socket) in sockets.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::unbounded();
            let spec = shard::ShardSpec {
                index,
                socket,
                batch: cfg.batch,
                max_fanout: cfg.max_endpoints_per_conference,
                core: (!cores.is_empty()).then(|| cores[index % cores.len()]),
                router: blindfold_proto::route::RouterConfig {
                    consent_timeout: std::time::Duration::from_secs(cfg.consent_timeout),
                },
                gso,
                gro: gro[index],
            };
            let h = shard::spawn(spec, rx, events_tx.clone(), metrics.clone(), stop.clone())
                .map_err(StartError::Shard)?;
            links.push(ShardLink {
                updates: tx,
                waker: h.waker.clone(),
            });
            wakers.push(h.waker);
            threads.push(h.thread);
        }
        let listener = std::net::TcpListener::bind(cfg.control).map_err(StartError::Control)?;
        let candidates = vec![cfg.advertised(media)];
        let control_addr = listener.local_addr().map_err(StartError::Control)?;
        let cluster = cfg
            .redis
            .clone()
            .map(|url| (url, registry::registration(&cfg, media, control_addr)));
        let ctx = control::ControlContext {
            config: Arc::new(cfg),
            shards: ShardSet::new(links),
            metrics: metrics.clone(),
            events: events_rx,
            candidates,
        };
        let control = control::ControlServer::spawn(listener, ctx).map_err(StartError::Control)?;
        let mut this = Self {
            media,
            control,
            metrics,
            shards: threads,
            wakers,
            stop,
            registration: None,
        };
        if let Some((url, reg)) = cluster {
            match registry::start(this.control.runtime(), &url, reg, this.metrics.clone()) {
                Ok(handle) => this.registration = Some(handle),
                Err(e) => {
                    this.stop();
                    return Err(StartError::Registry(e));
                }
            }
        }
        tracing::info!(shards = n, "forwarder started");
        Ok(this)
    }

    /// The bound media address (all shards share it).
    pub fn media_addr(&self) -> SocketAddr {
        self.media
    }

    /// The bound control API address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control.local_addr()
    }

    /// Per-shard metrics.
    pub fn metrics(&self) -> &Arc<metrics::AllShards> {
        &self.metrics
    }

    /// The control server (drain state, conference count).
    pub fn control(&self) -> &control::ControlServer {
        &self.control
    }

    /// SIGTERM semantics: the control API refuses new conferences and, in a cluster, the
    /// registration says `draining` at once, so no call is placed here any more.
    pub fn begin_drain(&self) {
        self.control.begin_drain();
        if let Some(r) = &self.registration {
            r.set_draining();
        }
    }

    /// Stops the shards and the control API and joins their threads. In a cluster the
    /// registration is deleted first (waiting at most a second for Redis).
    pub fn stop(mut self) {
        if let Some(r) = self.registration.take() {
            r.stop(std::time::Duration::from_secs(1));
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.shards {
            let _ = t.join();
        }
        self.control.stop();
    }
}

/// Entry point of `blindfold serve`: runs until SIGINT or SIGTERM.
///
/// SIGTERM drains: new conferences are refused (503) while existing ones go on until
/// they end or `--drain-timeout` passes. A second SIGINT/SIGTERM exits at once.
pub fn run_cli(args: config::ServeArgs, matches: Option<&clap::ArgMatches>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let cfg = args.merge_file(matches).context("configuration")?;
    let drain = std::time::Duration::from_secs(cfg.drain_timeout);
    let fwd = Forwarder::start(cfg).context("starting the forwarder")?;
    println!("media {}", fwd.media_addr());
    println!("control http://{}", fwd.control_addr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("draining: refusing new conferences");
        fwd.begin_drain();
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            if fwd.control().conference_count() == 0 {
                break;
            }
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
        anyhow::Ok(())
    })?;
    fwd.stop();
    tracing::info!("forwarder stopped");
    Ok(())
}
