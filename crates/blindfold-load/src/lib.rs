//! Load generator (`blindfold load`), capacity planner (`blindfold plan`) and the kernel
//! ceiling they are measured against.
//!
//! A run drives a target — a forwarder through its real control API and real UDP, or the
//! [`ceiling`] — with C conferences × P participants, each on its own UDP socket (the
//! forwarder latches per source address) and latched by STUN first. One sender thread
//! publishes every stream on its schedule with `sendmmsg`; receiver threads drain all
//! sockets with `recvmmsg` through mio; both use `forwarder::sys`, the crate's only
//! unsafe module. The run is bounded by `--duration`: warm-up, measured window, drain.
//!
//! - [`profile`], [`topology`]: what is sent, by whom, to whom (pure).
//! - [`setup`]: sockets, control API, latching, teardown.
//! - [`cluster`]: a run's layout over several forwarders and its relay links.
//! - [`engine`]: the sender and receiver loops.
//! - [`procfs`]: CPU, RSS and socket drops from /proc.
//! - [`report`]: the run's report and `.hgrm` files.
//! - [`ceiling`]: the minimal recvmmsg → sendmmsg fan-out.
//! - [`plan`]: sweeps runs until the SLO breaks and writes a report folder.
//!
//! This module must not reach into the forwarder's internals: it talks to a forwarder
//! only over HTTP and UDP (spawning one in-process uses only `Forwarder::start`).

pub mod ceiling;
pub mod cluster;
pub mod engine;
pub mod plan;
mod plot;
pub mod procfs;
pub mod profile;
pub mod report;
pub mod setup;
pub mod topology;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use procfs::CpuScope;
use report::{Churn, CpuReport, Drops, LoadReport, Percentiles};
use setup::{Api, FwdCounters, SetupError};
use topology::{Subscribe, Topology, TopologyError};

use blindfold_forwarder::{Forwarder, config::ServeArgs};

/// A load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The topology is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// Setup or teardown failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Starting an in-process target failed.
    #[error("starting the target: {0}")]
    Start(String),
    /// A thread or socket failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The arguments contradict each other.
    #[error("{0}")]
    Usage(String),
}

/// Which target to drive, and how to reach it.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// Start the target in this process (a forwarder, or the ceiling with --ceiling).
    #[arg(long)]
    pub spawn: bool,
    /// Drive the ceiling (minimal recvmmsg → sendmmsg fan-out) instead of a forwarder.
    #[arg(long)]
    pub ceiling: bool,
    /// The loop of a spawned ceiling.
    #[arg(long, value_enum, default_value = "minimal")]
    pub ceiling_loop: ceiling::CeilingLoop,
    /// Control API of a running forwarder.
    #[arg(long, default_value = "http://127.0.0.1:8480")]
    pub control: String,
    /// Bearer token of that control API.
    #[arg(long, env = "BLINDFOLD_CONTROL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Media address of a running forwarder or ceiling.
    #[arg(long, default_value = "127.0.0.1:10000")]
    pub media: SocketAddr,
    /// Process id of a running target, to read its CPU and memory from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Shards of a spawned forwarder.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Datagrams per recvmmsg in a spawned target.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Pin a spawned forwarder's shards to cores.
    #[arg(long)]
    pub pin: bool,
    /// Turn off a spawned forwarder's per-endpoint ingress limits (for rate sweeps above
    /// what one real participant sends).
    #[arg(long)]
    pub unlimited_ingress: bool,
    /// UDP GSO and GRO in a spawned forwarder (its --gso and --gro).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub offload: bool,
    /// Drive a cluster: the forwarders registered in this Redis (`serve --redis`), whose
    /// control APIs all take --token.
    #[arg(long, env = "BLINDFOLD_REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// How a cluster run spreads each call: placed[:BUDGET] (the cluster's own placement,
    /// BUDGET endpoints per forwarder), spread (member m on forwarder m mod N) or split
    /// (publishers on one forwarder, everyone else on the others: every copy one hop).
    #[arg(long, default_value = "placed")]
    pub layout: cluster::Layout,
}

/// The calls to simulate.
#[derive(clap::Args, Debug, Clone)]
pub struct ShapeArgs {
    /// Conferences (C).
    #[arg(long, default_value_t = 10)]
    pub conferences: usize,
    /// Participants per conference (P).
    #[arg(long, default_value_t = 5)]
    pub size: usize,
    /// Publishers per conference (default: all P).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Tracks each publisher sends: audio, video, screen or cbr:PPS:BYTES, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "audio,video")]
    pub profile: Vec<profile::TrackProfile>,
    /// Subscriptions: all (every other publisher) or last:N.
    #[arg(long, default_value = "all")]
    pub subscribe: Subscribe,
}

impl ShapeArgs {
    /// The topology these arguments describe.
    pub fn topology(&self) -> Result<Topology, TopologyError> {
        Topology::new(
            self.conferences,
            self.size,
            self.publishers,
            self.profile.clone(),
            self.subscribe,
        )
    }
}

/// Timing and generator settings.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Milliseconds to keep receiving after the last send.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// Receiver threads in the generator.
    #[arg(long, default_value_t = 1)]
    pub rx_threads: usize,
    /// SO_RCVBUF/SO_SNDBUF of each participant socket.
    #[arg(long, default_value_t = 1 << 20)]
    pub socket_buffer: usize,
    /// Subscription changes per second sent to the control API during the measured
    /// window (each re-sends one participant's subscription set; 0: none).
    #[arg(long, default_value_t = 0)]
    pub churn: u32,
    /// Seed of the generator's randomness (sizes, phases).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Send real SRTP (AEAD_AES_128_GCM with an epoch MKI, per-participant keys) made by
    /// the E2EE code, instead of SRTP-sized opaque bytes. The forwarder cannot tell the
    /// difference; the generator pays the encryption.
    #[arg(long)]
    pub encrypt: bool,
    /// Send each burst of equal-size packets (a video frame) as one segmented send (UDP
    /// GSO), as a sender with GSO does; a kernel without it gets plain sends.
    #[arg(long)]
    pub gso: bool,
    /// Let the receivers take coalesced bursts (UDP GRO), as a receiver behind a NIC
    /// with receive offload does; without it, the kernel splits every segmented copy on
    /// loopback and charges that to the sender, i.e. the target.
    #[arg(long)]
    pub gro: bool,
    /// Do not show a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Command-line arguments of `blindfold load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency percentile distribution (.hgrm, µs) to this file.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
}

enum Spawned {
    None,
    Forwarder(Box<Forwarder>),
    Ceiling(ceiling::Ceiling),
}

/// A target ready to be driven by any number of runs.
pub struct Target {
    media: SocketAddr,
    api: Option<Api>,
    cluster: Option<cluster::ClusterTarget>,
    cpu: Option<CpuScope>,
    pid: Option<u32>,
    shards: Option<usize>,
    local: bool,
    spawned: Spawned,
}

impl Target {
    /// Starts (with `--spawn`) or connects to the target.
    pub fn open(args: &TargetArgs) -> Result<Self, LoadError> {
        let me = procfs::self_pid();
        if let Some(url) = &args.redis {
            let token = args.token.as_deref().ok_or_else(|| {
                LoadError::Usage("--token is required to drive a cluster's forwarders".into())
            })?;
            let cl =
                cluster::ClusterTarget::open(url, token, args.layout).map_err(LoadError::Start)?;
            return Ok(Self {
                media: cl.nodes[0].media,
                api: None,
                cluster: Some(cl),
                cpu: args.pid.map(CpuScope::Process),
                pid: args.pid,
                shards: None,
                local: true,
                spawned: Spawned::None,
            });
        }
        if args.spawn && args.ceiling {
            let c = ceiling::Ceiling::start(&ceiling::CeilingArgs {
                media: "127.0.0.1:0".parse().expect("static address"),
                batch: args.batch,
                socket_buffer: ServeArgs::default().socket_buffer,
                core: None,
                mode: args.ceiling_loop,
            })?;
            return Ok(Self {
                media: c.media_addr(),
                api: None,
                cluster: None,
                cpu: Some(CpuScope::Threads(me, vec!["ceiling".into()])),
                pid: None,
                shards: None,
                local: true,
                spawned: Spawned::Ceiling(c),
            });
        }
        if args.spawn {
            let token = hex::encode(rand::random::<[u8; 16]>());
            let defaults = ServeArgs::default();
            let mut cfg = ServeArgs {
                media: "127.0.0.1:0".parse().expect("static address"),
                control: "127.0.0.1:0".parse().expect("static address"),
                shards: Some(args.shards.max(1)),
                batch: args.batch,
                pin: args.pin,
                control_token: Some(token.clone()),
                ..defaults
            };
            if args.unlimited_ingress {
                cfg.ingress_pps = 0;
                cfg.ingress_bps = 0;
            }
            cfg.gso = args.offload;
            cfg.gro = args.offload;
            let fwd = Forwarder::start(cfg).map_err(|e| LoadError::Start(e.to_string()))?;
            let api = Api::new(&format!("http://{}", fwd.control_addr()), Some(&token))
                .map_err(|e| LoadError::Start(e.to_string()))?;
            return Ok(Self {
                media: fwd.media_addr(),
                api: Some(api),
                cluster: None,
                cpu: Some(CpuScope::Threads(me, vec!["shard-".into()])),
                pid: None,
                shards: Some(args.shards.max(1)),
                local: true,
                spawned: Spawned::Forwarder(Box::new(fwd)),
            });
        }
        let api = if args.ceiling {
            None
        } else {
            let token = args.token.clone().ok_or_else(|| {
                LoadError::Usage(
                    "--token (or BLINDFOLD_CONTROL_TOKEN) is required to drive a running forwarder"
                        .into(),
                )
            })?;
            Some(Api::new(&args.control, Some(&token)).map_err(SetupError::from)?)
        };
        Ok(Self {
            media: args.media,
            api,
            cluster: None,
            cpu: args.pid.map(CpuScope::Process),
            pid: args.pid,
            shards: None,
            local: args.media.ip().is_loopback(),
            spawned: Spawned::None,
        })
    }

    /// The media address runs send to.
    pub fn media_addr(&self) -> SocketAddr {
        self.media
    }

    /// "forwarder" or "ceiling".
    pub fn name(&self) -> &'static str {
        if self.cluster.is_some() {
            "cluster"
        } else if self.api.is_some() {
            "forwarder"
        } else {
            "ceiling"
        }
    }

    /// Resident memory of the target process (this process when spawned).
    pub fn rss_bytes(&self) -> Option<u64> {
        match self.spawned {
            Spawned::None => self.pid.and_then(procfs::rss_bytes),
            _ => procfs::rss_bytes(procfs::self_pid()),
        }
    }

    /// Stops a spawned target.
    pub fn close(self) {
        match self.spawned {
            Spawned::None => {}
            Spawned::Forwarder(f) => f.stop(),
            Spawned::Ceiling(c) => c.stop(),
        }
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

/// One bounded run of `topo` against `target`.
pub fn run(target: &Target, topo: &Topology, args: &RunArgs) -> Result<LoadReport, LoadError> {
    if let Some(cl) = &target.cluster {
        return run_cluster(target, cl, topo, args);
    }
    if target.api.is_none() && topo.subscribe != Subscribe::All {
        return Err(LoadError::Usage(
            "the ceiling only fans out to all members (--subscribe all)".into(),
        ));
    }
    let media = target.media;
    let sockets = setup::participant_sockets(topo.participants(), media, args.socket_buffer)?;
    let prefix = format!("load{}", hex::encode(rand::random::<[u8; 4]>()));
    let creds = match &target.api {
        Some(api) => {
            let creds = setup::create_calls(api, topo, &prefix)?;
            let wait = Duration::from_secs(20 + topo.participants() as u64 / 500);
            let latched = setup::latch_all(&sockets, &vec![media; sockets.len()], &creds, wait)
                .and_then(|()| setup::wait_latched(api, topo, &prefix, wait));
            if let Err(e) = latched {
                let _ = setup::delete_calls(api, topo, &prefix);
                return Err(e.into());
            }
            Some(creds)
        }
        None => {
            setup::join_ceiling(&sockets, media, topo.size, Duration::from_secs(20))?;
            None
        }
    };
    let dests = vec![media; sockets.len()];
    let result = measure(
        target,
        topo,
        args,
        &sockets,
        &dests,
        creds.as_deref(),
        &prefix,
    );
    if let Some(api) = &target.api {
        let cleaned = setup::delete_calls(api, topo, &prefix);
        if result.is_ok() {
            cleaned?;
        }
    }
    result
}

/// One bounded run of `topo` across a cluster's forwarders, laid out as the target says.
fn run_cluster(
    target: &Target,
    cl: &cluster::ClusterTarget,
    topo: &Topology,
    args: &RunArgs,
) -> Result<LoadReport, LoadError> {
    let prefix = format!("load{}", hex::encode(rand::random::<[u8; 4]>()));
    let calls = cl.lay_out(topo, &prefix).map_err(LoadError::Usage);
    let calls = match calls {
        Ok(c) => c,
        Err(e) => {
            cl.forget(topo, &prefix);
            return Err(e);
        }
    };
    let dests = calls.dests();
    let sockets =
        setup::participant_sockets(topo.participants(), target.media, args.socket_buffer)?;
    let setup = || -> Result<Vec<engine::Creds>, SetupError> {
        let creds = calls.create(&cl.nodes, topo, &prefix)?;
        let wait = Duration::from_secs(20 + topo.participants() as u64 / 500);
        setup::latch_all(&sockets, &dests, &creds, wait)?;
        Ok(creds)
    };
    let creds = match setup() {
        Ok(c) => c,
        Err(e) => {
            let _ = calls.delete(&cl.nodes, topo, &prefix);
            cl.forget(topo, &prefix);
            return Err(e.into());
        }
    };
    let result = measure(target, topo, args, &sockets, &dests, Some(&creds), &prefix);
    let cleaned = calls.delete(&cl.nodes, topo, &prefix);
    cl.forget(topo, &prefix);
    let mut report = result?;
    cleaned?;
    report.cluster = Some(cluster_report(&calls, cl, topo, &report));
    Ok(report)
}

/// Per-forwarder figures of a cluster run: copies each sent per second, endpoints, and
/// the copies that crossed links (the forwarders' sends beyond what members received).
fn cluster_report(
    calls: &cluster::ClusterCalls,
    cl: &cluster::ClusterTarget,
    topo: &Topology,
    report: &LoadReport,
) -> report::ClusterReport {
    let endpoints = calls.endpoints_per_node();
    let tx: Vec<f64> = report.node_tx_pps.clone();
    let total_tx: f64 = tx.iter().sum();
    let link_pps = (total_tx - report.out_pps).max(0.0);
    // The plan's own count: per packet in, how many copies go over a link.
    let planned: f64 = (0..topo.participants())
        .filter(|p| p % topo.size < topo.publishers)
        .map(|p| calls.link_copies(topo, p) as f64)
        .sum::<f64>()
        / (topo.conferences * topo.publishers).max(1) as f64;
    let mut spans = calls.span();
    spans.sort_unstable();
    report::ClusterReport {
        layout: format!("{:?}", cl.layout),
        nodes: cl
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| report::NodeFigures {
                id: n.id.clone(),
                endpoints: endpoints[i],
                participants: calls.at.iter().filter(|&&a| a == i).count(),
                tx_pps: tx.get(i).copied().unwrap_or(0.0),
            })
            .collect(),
        link_pps,
        link_share: if total_tx > 0.0 {
            link_pps / total_tx
        } else {
            0.0
        },
        planned_link_copies_per_packet: planned,
        max_span: spans.last().copied().unwrap_or(0),
        spanning_calls: spans.iter().filter(|&&s| s > 1).count(),
    }
}

struct Sample {
    target: Option<procfs::CpuTimes>,
    generator: Option<procfs::CpuTimes>,
    fwd: Option<FwdCounters>,
    /// Each cluster forwarder's counters (empty for one forwarder).
    nodes: Vec<FwdCounters>,
    target_drops: Option<u64>,
    gen_drops: u64,
    at: Instant,
}

fn sample(
    target: &Target,
    gen_scope: &CpuScope,
    gen_ports: &std::collections::HashSet<u16>,
) -> Sample {
    // The CPU readings and their instant first: the forwarder's /metrics below can be
    // slow to answer when its core is saturated, and must not stretch or shrink the
    // interval the CPU is divided by.
    let target_cpu = target.cpu.as_ref().and_then(procfs::cpu);
    let generator = procfs::cpu(gen_scope);
    let at = Instant::now();
    let nodes: Vec<FwdCounters> = target.cluster.as_ref().map_or(Vec::new(), |cl| {
        cl.nodes
            .iter()
            .map(|n| {
                n.api
                    .metrics()
                    .map(|t| FwdCounters::parse(&t))
                    .unwrap_or_default()
            })
            .collect()
    });
    let medias: Vec<SocketAddr> = target.cluster.as_ref().map_or(vec![target.media], |cl| {
        cl.nodes.iter().map(|n| n.media).collect()
    });
    Sample {
        target: target_cpu,
        generator,
        fwd: match target.cluster {
            Some(_) => Some(nodes.iter().fold(FwdCounters::default(), |a, n| a.plus(n))),
            None => target
                .api
                .as_ref()
                .and_then(|a| a.metrics().ok())
                .map(|t| FwdCounters::parse(&t)),
        },
        nodes,
        target_drops: target
            .local
            .then(|| procfs::udp_drops(&procfs::ports_of(medias.iter()))),
        gen_drops: procfs::udp_drops(gen_ports),
        at,
    }
}

fn measure(
    target: &Target,
    topo: &Topology,
    args: &RunArgs,
    sockets: &[UdpSocket],
    dests: &[SocketAddr],
    creds: Option<&[engine::Creds]>,
    prefix: &str,
) -> Result<LoadReport, LoadError> {
    let (warmup, duration) = (secs(args.warmup), secs(args.duration));
    let shared = engine::Shared::new(topo.streams(), Instant::now(), warmup, duration);
    let gen_scope = CpuScope::Threads(procfs::self_pid(), vec!["load-".into()]);
    let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
    let gen_ports = procfs::ports_of(&addrs);
    let rx_threads = args.rx_threads.clamp(1, topo.participants());
    let media = target.media;
    let batch = 32;
    // The first socket tells whether the kernel has GRO; once one socket has it on,
    // every socket must (a plain receive batch would truncate a coalesced burst).
    let gro = args.gro
        && match sockets.first().map(blindfold_udp::enable_gro) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "UDP GRO unavailable on the generator's sockets; receiving one datagram at a time");
                false
            }
            None => false,
        };
    if gro {
        for s in &sockets[1..] {
            blindfold_udp::enable_gro(s)?;
        }
    }
    let gso = args.gso && blindfold_udp::gso_supported(media);
    if args.gso && !gso {
        tracing::warn!("UDP GSO unavailable: the generator sends bursts one datagram at a time");
    }
    let progress = (!args.quiet && args.warmup + args.duration >= 3.0).then(|| {
        let bar = indicatif::ProgressBar::new((args.warmup + args.duration).ceil() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} s {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    std::thread::scope(|scope| -> Result<LoadReport, LoadError> {
        let mut rx_handles = Vec::with_capacity(rx_threads);
        for r in 0..rx_threads {
            let members: Vec<(usize, &UdpSocket)> = sockets
                .iter()
                .enumerate()
                .filter(|(p, _)| p % rx_threads == r)
                .collect();
            let shared = &shared;
            rx_handles.push(
                std::thread::Builder::new()
                    .name(format!("load-rx-{r}"))
                    .spawn_scoped(scope, move || {
                        engine::run_receiver(topo, &members, shared, batch, gro)
                    })?,
            );
        }
        let shared_ref = &shared;
        let tx = std::thread::Builder::new()
            .name("load-tx".into())
            .spawn_scoped(scope, move || {
                engine::run_sender(
                    topo,
                    sockets,
                    dests,
                    creds,
                    shared_ref,
                    engine::SendOptions {
                        seed: args.seed,
                        encrypt: args.encrypt,
                        gso,
                    },
                )
            })?;
        let churn = (args.churn > 0)
            .then_some(target.api.as_ref())
            .flatten()
            .map(|api| {
                let shared = &shared;
                std::thread::Builder::new()
                    .name("churn".into())
                    .spawn_scoped(scope, move || {
                        churn_loop(api, topo, prefix, shared, args.churn)
                    })
            })
            .transpose()?;
        // Warm-up, then the measured window with progress.
        let wait_until = |ns: u64, bar: &Option<indicatif::ProgressBar>| {
            let mut last = (Instant::now(), shared.received.load(Ordering::Relaxed));
            loop {
                let now = shared.epoch.elapsed().as_nanos() as u64;
                if now >= ns {
                    break;
                }
                std::thread::sleep(Duration::from_nanos((ns - now).min(250_000_000)));
                if let Some(b) = bar {
                    let r = shared.received.load(Ordering::Relaxed);
                    let dt = last.0.elapsed().as_secs_f64().max(1e-3);
                    b.set_position(shared.epoch.elapsed().as_secs());
                    b.set_message(format!("{:.0} copies/s", (r - last.1) as f64 / dt));
                    last = (Instant::now(), r);
                }
            }
        };
        wait_until(shared.warmup_end_ns, &progress);
        let s0 = sample(target, &gen_scope, &gen_ports);
        wait_until(shared.end_ns, &progress);
        let mut s1 = sample(target, &gen_scope, &gen_ports);
        let sent = tx
            .join()
            .map_err(|_| LoadError::Start("sender thread panicked".into()))?;
        std::thread::sleep(Duration::from_millis(args.drain_ms));
        // Counters of everything in flight at the end, after the drain.
        let late = sample(target, &gen_scope, &gen_ports);
        s1.fwd = late.fwd;
        s1.nodes = late.nodes;
        s1.target_drops = late.target_drops;
        s1.gen_drops = late.gen_drops;
        shared.stop_rx.store(true, Ordering::Relaxed);
        let mut recv = Vec::with_capacity(rx_threads);
        for h in rx_handles {
            recv.push(
                h.join()
                    .map_err(|_| LoadError::Start("receiver thread panicked".into()))??,
            );
        }
        if let Some(b) = &progress {
            b.finish_and_clear();
        }
        let window = (shared.end_ns - shared.warmup_end_ns) as f64 / 1e9;
        let mut report = build_report(target, topo, &sent, recv, &s0, &s1, window);
        report.offload.gso = gso;
        report.offload.gro = gro;
        if let Some(h) = churn {
            let (ok, failed) = h
                .join()
                .map_err(|_| LoadError::Start("churn thread panicked".into()))?;
            report.churn = Some(Churn {
                per_s: ok as f64 / report.measured_s,
                failed,
            });
        }
        Ok(report)
    })
}

/// Re-sends subscription sets at `rate` per second through the measured window;
/// returns (accepted, failed).
fn churn_loop(
    api: &Api,
    topo: &Topology,
    prefix: &str,
    shared: &engine::Shared,
    rate: u32,
) -> (u64, u64) {
    let (mut ok, mut failed) = (0u64, 0u64);
    let period = 1_000_000_000 / u64::from(rate.max(1));
    let mut next = shared.warmup_end_ns;
    let mut p = 0usize;
    loop {
        let now = shared.epoch.elapsed().as_nanos() as u64;
        if now >= shared.end_ns {
            return (ok, failed);
        }
        if now < next {
            std::thread::sleep(Duration::from_nanos(next - now));
            continue;
        }
        match setup::resubscribe(api, topo, prefix, p % topo.participants()) {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
        p += 1;
        next += period;
    }
}

/// CPU between two samples `wall` seconds apart, per copy at `copies_per_s`.
fn cpu_report(
    a: Option<procfs::CpuTimes>,
    b: Option<procfs::CpuTimes>,
    wall: f64,
    copies_per_s: f64,
) -> Option<CpuReport> {
    let d = b?.since(&a?);
    let cores = d.total() / wall;
    Some(CpuReport {
        user_s: d.user,
        sys_s: d.sys,
        cores,
        busiest_thread: d.max_thread / wall,
        us_per_copy: if copies_per_s > 0.0 {
            cores * 1e6 / copies_per_s
        } else {
            0.0
        },
    })
}

fn build_report(
    target: &Target,
    topo: &Topology,
    sent: &engine::SenderResult,
    recv: Vec<engine::ReceiverResult>,
    s0: &Sample,
    s1: &Sample,
    window: f64,
) -> LoadReport {
    // Copies are counted over the sender's measured window (by sequence number), CPU
    // between the two samples; rates of each over its own interval.
    let wall = s1.at.duration_since(s0.at).as_secs_f64().max(1e-3);
    let mut hist = None::<hdrhistogram::Histogram<u64>>;
    let (mut unique, mut bytes, mut dups, mut reord, mut stale, mut misr, mut unsub) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut gro_buffers = 0;
    for r in recv {
        gro_buffers += r.gro_buffers;
        unique += r.unique;
        bytes += r.bytes;
        dups += r.duplicates;
        reord += r.reordered;
        stale += r.stale;
        misr += r.misrouted;
        unsub += r.unsubscribed;
        match &mut hist {
            Some(h) => {
                let _ = h.add(&r.latency_ns);
            }
            None => hist = Some(r.latency_ns),
        }
    }
    let expected: u64 = sent
        .measured_sent
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let (p, _) = topo.stream_owner(s);
            n * topo.fanout(p % topo.size) as u64
        })
        .sum();
    let lost = expected.saturating_sub(unique);
    let copies_per_s = unique as f64 / window;
    let target_cpu = cpu_report(s0.target, s1.target, wall, copies_per_s);
    let generator_cpu =
        cpu_report(s0.generator, s1.generator, wall, copies_per_s).unwrap_or_default();
    let fwd = match (s0.fwd, s1.fwd) {
        (Some(a), Some(b)) => Some(b.since(&a)),
        _ => None,
    };
    let drops = Drops {
        target_socket: s1
            .target_drops
            .zip(s0.target_drops)
            .map(|(b, a)| b.saturating_sub(a)),
        generator_sockets: s1.gen_drops.saturating_sub(s0.gen_drops),
        generator_send_refused: sent.send_refused,
        forwarder_send_failed: fwd.map(|f| f.send_failed),
        forwarder_other: fwd.map(|f| f.other_drops),
    };
    let lag = &sent.lag_us;
    let send_lag_us = [
        lag.value_at_quantile(0.5) as f64,
        lag.value_at_quantile(0.99) as f64,
        lag.max() as f64,
    ];
    let mut limited = Vec::new();
    if drops.generator_sockets > 0 {
        limited.push(format!(
            "{} copies dropped at the generator's own sockets (its receivers fell behind)",
            drops.generator_sockets
        ));
    }
    if sent.send_refused > 0 {
        limited.push(format!(
            "{} packets refused by the generator's send buffers",
            sent.send_refused
        ));
    }
    if sent.skipped_events > 0 || send_lag_us[1] > 2_000.0 {
        limited.push(format!(
            "the send loop fell behind schedule (p99 lag {:.1} ms, {} events skipped)",
            send_lag_us[1] / 1000.0,
            sent.skipped_events
        ));
    }
    if generator_cpu.busiest_thread > 0.9 {
        limited.push(format!(
            "a generator thread used {:.0} % of a core",
            generator_cpu.busiest_thread * 100.0
        ));
    }
    LoadReport {
        target: target.name().into(),
        shards: target.shards,
        conferences: topo.conferences,
        size: topo.size,
        publishers: topo.publishers,
        tracks: topo.tracks.iter().map(|t| t.to_string()).collect(),
        subscribe: topo.subscribe.to_string(),
        participants: topo.participants(),
        mean_fanout: topo.mean_fanout(),
        measured_s: window,
        in_pps: sent.measured_packets as f64 / window,
        expected_copies: expected,
        received_copies: unique,
        lost_copies: lost,
        loss: if expected > 0 {
            lost as f64 / expected as f64
        } else {
            0.0
        },
        duplicates: dups,
        reordered: reord,
        stale,
        misrouted: misr,
        unsubscribed: unsub,
        out_pps: unique as f64 / window,
        out_gbps: bytes as f64 * 8.0 / wall / 1e9,
        latency_us: hist.as_ref().map(Percentiles::from_ns).unwrap_or_default(),
        target_cpu,
        generator_cpu,
        target_rss_bytes: target.rss_bytes(),
        drops,
        send_lag_us,
        skipped_events: sent.skipped_events,
        generator_limited: limited,
        offload: report::Offload {
            gso: false,
            gso_sends: sent.gso_sends,
            gso_fallbacks: sent.gso_fallbacks,
            gro: false,
            gro_buffers,
        },
        churn: None,
        node_tx_pps: s1
            .nodes
            .iter()
            .zip(&s0.nodes)
            .map(|(b, a)| (b.tx - a.tx) / wall)
            .collect(),
        cluster: None,
        histogram: hist,
    }
}

/// Entry point of `blindfold load`.
pub fn run_cli(args: LoadArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let topo = args.shape.topology()?;
    let target = Target::open(&args.target).context("opening the target")?;
    let result = run(&target, &topo, &args.run);
    target.close();
    let report = result.context("load run")?;
    print!("{report}");
    // One machine-readable line for scripts (scripts/bench.sh).
    println!(
        "RESULT target={} out_pps={:.0} loss={:.6} p50_us={:.1} p99_us={:.1} cpu_us_per_copy={} gen_cpu_us_per_copy={:.4} generator_limited={}",
        report.target,
        report.out_pps,
        report.loss,
        report.latency_us.p50,
        report.latency_us.p99,
        report
            .target_cpu
            .map_or("?".into(), |c| format!("{:.4}", c.us_per_copy)),
        report.generator_cpu.us_per_copy,
        !report.generator_limited.is_empty()
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.hgrm {
        let f =
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
        if let Some(h) = &report.histogram {
            report::write_hgrm(h, std::io::BufWriter::new(f))?;
        }
    }
    Ok(())
}
