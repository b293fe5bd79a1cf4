//! `blindfold demo`: a whole end-to-end encrypted call on this machine, with its security
//! properties checked.
//!
//! Owns the script (who joins and leaves when), the tables it prints and the checks it
//! runs. It starts a forwarder and the signalling service in this process on loopback
//! (port 0), and N in-process participants ([`blindfold_client::Participant`]). Must not
//! touch the forwarder's or the participants' internals beyond their public handles: the
//! checks use only what a participant could see (its own keys, its own socket) and the
//! senders' logs of what they sent when.
//!
//! Script over `--duration` (default 20 s) with N (default 5) participants:
//! ```text
//!  0%   N-1 join (the first starts the MLS group; each later one is added by a Commit
//!       from the lowest leaf, the committer); one of them records ciphertext
//!  20%  a late joiner joins             -> Commit + Welcome, new epoch
//!  40%  a member leaves                 -> Commit removing it, new epoch
//!  60%  the committer (lowest leaf) leaves -> the next lowest commits its removal
//!  100% counters, forwarder metrics, verification codes, security checks; exit 0 only if
//!       all held
//! ```
//!
//! With `--last-n N` (or `--speakers`) the script is selective forwarding's instead
//! ([`selective`]): everyone joins publishing audio with its level and three-layer
//! simulcast video, all but the last receive the videos of the N most recent speakers, the
//! last (the control receiver) asks for no last-N and top-K audio 1; speakers take turns
//! of [`selective::TURN`]; then the selective checks and the download figures.

pub mod checks;
pub mod selective;

use std::time::{Duration, Instant};

use blindfold_client::{
    Identity, Participant, ParticipantConfig, SelectiveConfig, Stats, VideoConfig,
};
use blindfold_forwarder::Forwarder;
use blindfold_forwarder::config::ServeArgs;
use blindfold_forwarder::metrics::DropReason;
use blindfold_signal::{SignalArgs, SignalServer};

pub use checks::{Check, ForwarderCounters};

/// Command-line arguments of `blindfold demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Participants in the call (at least 4: committer, leaver, recorder, late joiner).
    #[arg(long, default_value_t = 5)]
    pub participants: usize,

    /// Length of the script in seconds.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,

    /// Participants also publish ~1.5 Mbit/s of video.
    #[arg(long)]
    pub video: bool,

    /// Seconds between one-way ratchet steps (short, so the demo shows a few).
    #[arg(long, default_value_t = 5)]
    pub epoch_interval: u64,

    /// DEBUG ONLY: participants append their SRTP master keys to FILE (created 0600).
    #[arg(long)]
    pub key_log: Option<std::path::PathBuf>,

    /// Selective forwarding: speakers take turns and every receiver but the control gets
    /// the videos of the N most recent speakers (implies --speakers and --video).
    #[arg(long)]
    pub last_n: Option<u32>,

    /// Run the speaking-turns script (simulcast video, speaker detection) even without
    /// --last-n: everyone gets everyone's video, for the comparison.
    #[arg(long)]
    pub speakers: bool,
}

/// The demo could not run its script.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Bad arguments.
    #[error("{0}")]
    Args(String),
    /// The forwarder did not start.
    #[error("forwarder: {0}")]
    Forwarder(#[from] blindfold_forwarder::StartError),
    /// The signalling service did not start.
    #[error("signalling: {0}")]
    Signal(#[from] blindfold_signal::SignalError),
    /// A participant failed a step.
    #[error("participant {who}: {error}")]
    Participant {
        /// Its name in the demo.
        who: String,
        /// What failed.
        error: blindfold_client::ClientError,
    },
}

/// One participant's row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Demo name (never sent anywhere).
    pub name: String,
    /// Its role in the script.
    pub role: &'static str,
    /// Final counters.
    pub stats: Stats,
}

/// Everything the demo found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per participant.
    pub rows: Vec<Row>,
    /// The forwarder's own counters.
    pub forwarder: ForwarderCounters,
    /// The security and delivery checks.
    pub checks: Vec<Check>,
    /// Figures measured by the script (selective forwarding's), as printed.
    pub figures: Vec<String>,
}

impl Report {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The tables, as printed.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "\nParticipants");
        let _ = writeln!(
            out,
            "{:<8} {:<16} {:>7} {:>8} {:>9} {:>6} {:>6} {:>5} {:>6} {:>6} {:>6} {:>8} {:>6}",
            "name",
            "role",
            "sent",
            "received",
            "decrypted",
            "failed",
            "no-key",
            "lost",
            "epochs",
            "rekeys",
            "steps",
            "max-gap",
            "stalls"
        );
        for r in &self.rows {
            let s = &r.stats;
            let _ = writeln!(
                out,
                "{:<8} {:<16} {:>7} {:>8} {:>9} {:>6} {:>6} {:>5} {:>6} {:>6} {:>6} {:>6}ms {:>6}",
                r.name,
                r.role,
                s.sent,
                s.received,
                s.decrypted,
                s.failed,
                s.no_key,
                s.lost,
                s.epochs_seen,
                s.rekeys,
                s.ratchets,
                s.max_gap_ms,
                s.stalls
            );
        }
        let _ = writeln!(out, "\nVerification codes (MLS epoch authenticator)");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "  {:<8} epoch {:>3}  {}",
                r.name,
                r.stats.mls_epoch,
                r.stats.verification_code.as_deref().unwrap_or("-")
            );
        }
        let f = &self.forwarder;
        let _ = writeln!(out, "\nForwarder");
        let _ = writeln!(out, "  packets in       {:>9}", f.rx_packets);
        let _ = writeln!(out, "  copies out       {:>9}", f.tx_packets);
        let _ = writeln!(out, "  RTP forwarded    {:>9}", f.rtp_forwarded);
        let _ = writeln!(out, "  STUN answered    {:>9}", f.stun_answered);
        for (reason, n) in &f.drops {
            if *n > 0 {
                let _ = writeln!(out, "  dropped {:<16} {:>9}", reason, n);
            }
        }
        if f.drops.iter().all(|(_, n)| *n == 0) {
            let _ = writeln!(out, "  dropped          {:>9}", 0);
        }
        if !self.figures.is_empty() {
            let _ = writeln!(out, "\nFigures");
            for f in &self.figures {
                let _ = writeln!(out, "  {f}");
            }
        }
        let _ = writeln!(out, "\nSecurity and delivery checks");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "  [{}] {}\n        {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        out
    }
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// A forwarder's counters summed over its shards.
fn forwarder_counters(fwd: &Forwarder) -> ForwarderCounters {
    let mut c = ForwarderCounters::default();
    let mut drops = [0u64; DropReason::COUNT];
    for s in fwd.metrics().iter() {
        let snap = s.snapshot();
        c.rx_packets += snap.counters.rx_packets;
        c.tx_packets += snap.counters.tx_packets;
        c.rtp_forwarded += snap.counters.rtp_forwarded;
        c.stun_answered += snap.counters.stun_answered;
        for (d, n) in drops.iter_mut().zip(snap.counters.drops) {
            *d += n;
        }
    }
    c.drops = DropReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), drops[*r as usize]))
        .collect();
    c
}

/// Runs the script and its checks.
pub fn run(args: &DemoArgs) -> Result<Report, DemoError> {
    if args.participants < 4 {
        return Err(DemoError::Args("--participants must be at least 4".into()));
    }
    if let Some(k) = args.last_n
        && args.participants < k as usize + 3
    {
        // A speaker must have dropped out of every receiver's last N by its next turn.
        return Err(DemoError::Args(
            "--participants must be at least --last-n + 3".into(),
        ));
    }
    if args.duration < 8 {
        return Err(DemoError::Args(
            "--duration must be at least 8 seconds".into(),
        ));
    }
    let mut token = [0u8; 16];
    rand::fill(&mut token);
    let token = hex::encode(token);
    let mut serve = ServeArgs::default();
    serve.media = "127.0.0.1:0"
        .parse()
        .map_err(|_| DemoError::Args("address".into()))?;
    serve.control = serve.media;
    serve.shards = Some(2);
    serve.pin = false;
    serve.socket_buffer = 4 << 20;
    serve.control_token = Some(token.clone());
    let fwd = Forwarder::start(serve)?;
    let signal = SignalServer::start(&SignalArgs {
        listen: "127.0.0.1:0"
            .parse()
            .map_err(|_| DemoError::Args("address".into()))?,
        forwarders: vec![format!("http://{}", fwd.control_addr())],
        control_token: token,
        debug_state: false,
        metrics: false,
        speaker_detection: true,
        limits: Default::default(),
        health: Default::default(),
    })?;
    println!(
        "forwarder media {} control http://{}; signalling {}",
        fwd.media_addr(),
        fwd.control_addr(),
        signal.ws_url()
    );
    let selective = args.speakers || args.last_n.is_some();
    let result = if selective {
        speakers_script(args, &signal, &fwd)
    } else {
        script(args, &signal, &fwd).map(|(rows, checks)| (rows, checks, Vec::new()))
    };
    signal.stop();
    let counters = forwarder_counters(&fwd);
    fwd.stop();
    let (rows, checks, figures) = result?;
    Ok(Report {
        rows,
        forwarder: counters,
        checks,
        figures,
    })
}

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

fn name(i: usize) -> String {
    NAMES
        .get(i)
        .map_or_else(|| format!("p{i}"), |n| n.to_string())
}

fn script(
    args: &DemoArgs,
    signal: &SignalServer,
    _fwd: &Forwarder,
) -> Result<(Vec<Row>, Vec<Check>), DemoError> {
    let mut call_secret = [0u8; 32];
    rand::fill(&mut call_secret);
    let n = args.participants;
    let total = Duration::from_secs(args.duration);
    let config = |i: usize| {
        let mut c = ParticipantConfig::new(
            &signal.ws_url(),
            call_secret,
            Identity::generate(&format!("{}@example.org", name(i)), "laptop"),
        );
        c.video = args.video.then(VideoConfig::default);
        c.schedule.epoch_interval_ms = args.epoch_interval.max(1) * 1000;
        c.key_log = args.key_log.clone();
        if i == RECORDER {
            c.record = 200_000;
        }
        // The leavers play the attacker: they keep every key they held, so the probes show
        // what a leaver that did not erase its keys can still open.
        c.keep_keys_after_leave = i == LEAVER || i == KEYGEN;
        c
    };
    let fail = |i: usize| {
        move |error| DemoError::Participant {
            who: name(i),
            error,
        }
    };
    let wait = Duration::from_secs(15);
    let start = Instant::now();
    let mut ps: Vec<Participant> = Vec::with_capacity(n);
    // Join one at a time so the leaf order (and so the committer) is the demo's.
    for i in 0..n - 1 {
        let p = Participant::spawn(config(i)).map_err(fail(i))?;
        p.wait_ready(wait).map_err(fail(i))?;
        ps.push(p);
    }
    println!(
        "{} participants in the call; the committer (lowest leaf) is {}",
        n - 1,
        name(KEYGEN)
    );
    sleep_until(start + total / 5);
    let joiner = n - 1;
    let before_join = Instant::now();
    let p = Participant::spawn(config(joiner)).map_err(fail(joiner))?;
    p.wait_ready(wait).map_err(fail(joiner))?;
    let ready = Instant::now();
    ps.push(p);
    println!("{} joined late", name(joiner));
    // Let a few packets under the joiner's first epoch reach the recorder.
    std::thread::sleep(Duration::from_millis(500));
    let joiner_check = checks::joiner_check(&ps, RECORDER, joiner, before_join, ready);
    sleep_until(start + total * 2 / 5);
    let leaver_left = ps[LEAVER].leave(wait).map_err(fail(LEAVER))?;
    println!("{} left", name(LEAVER));
    sleep_until(start + total * 3 / 5);
    let keygen_left = ps[KEYGEN].leave(wait).map_err(fail(KEYGEN))?;
    println!("{} (the committer) left", name(KEYGEN));
    sleep_until(start + total);

    let timeline = checks::Timeline {
        before_join,
        joiner,
        leaves: vec![(LEAVER, leaver_left), (KEYGEN, keygen_left)],
        recorder: RECORDER,
        grace_ms: config(0).schedule.grace_ms,
        joiner_check,
    };
    let checks = checks::run_all(&ps, &timeline);
    // Everyone's counters at the same moment: stopping a participant is a leave, which
    // moves the others to a new epoch (and its verification code).
    let snapshot: Vec<Stats> = ps.iter().map(Participant::stats).collect();
    drop(ps);
    let rows = snapshot
        .into_iter()
        .enumerate()
        .map(|(i, stats)| {
            let role = match i {
                KEYGEN => "committer, left",
                LEAVER => "left",
                RECORDER => "recorder",
                j if j == joiner => "late joiner",
                _ => "member",
            };
            Row {
                name: name(i),
                role,
                stats,
            }
        })
        .collect();
    Ok((rows, checks))
}

/// Selective forwarding's script: everyone joins, speakers take turns, then the checks of
/// [`selective`] and the figures (download per receiver, forwarder copies/s, the time from
/// a speaker change to the new speaker's first decodable frame).
fn speakers_script(
    args: &DemoArgs,
    signal: &SignalServer,
    fwd: &Forwarder,
) -> Result<Outcome, DemoError> {
    let mut call_secret = [0u8; 32];
    rand::fill(&mut call_secret);
    let n = args.participants;
    let control = n - 1;
    let config = |i: usize| {
        let mut c = ParticipantConfig::new(
            &signal.ws_url(),
            call_secret,
            Identity::generate(&format!("{}@example.org", name(i)), "laptop"),
        );
        c.video = Some(VideoConfig::default());
        c.schedule.epoch_interval_ms = args.epoch_interval.max(1) * 1000;
        c.key_log = args.key_log.clone();
        c.selective = SelectiveConfig {
            simulcast: true,
            last_n: if i == control { None } else { args.last_n },
            top_k_audio: (i == control).then_some(1),
            ..SelectiveConfig::default()
        };
        c
    };
    let fail = |i: usize| {
        move |error| DemoError::Participant {
            who: name(i),
            error,
        }
    };
    let wait = Duration::from_secs(15);
    let mut ps: Vec<Participant> = Vec::with_capacity(n);
    for i in 0..n {
        let p = Participant::spawn(config(i)).map_err(fail(i))?;
        p.wait_ready(wait).map_err(fail(i))?;
        ps.push(p);
    }
    println!(
        "{n} participants in the call; {} receive {}; {} is the control receiver (every \
         video, top-K audio 1)",
        n - 1,
        args.last_n
            .map_or_else(|| "every video".into(), |k| format!("last-N {k}")),
        name(control)
    );
    // Let every receive choice and the first key frames land before the turns start.
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    let before = forwarder_counters(fwd);
    let bytes_before: Vec<u64> = ps.iter().map(|p| p.stats().received_bytes).collect();
    let speakers: Vec<usize> = (0..control).collect();
    let until = start + Duration::from_secs(args.duration);
    let (turns, samples) = selective::run_turns(&ps, &speakers, selective::TURN, until);
    let end = Instant::now();
    let after = forwarder_counters(fwd);
    let rec = selective::Recording {
        ids: ps.iter().map(|p| p.id().to_hex()).collect(),
        last_n_receivers: if args.last_n.is_some() {
            (0..control).collect()
        } else {
            Vec::new()
        },
        last_n: args.last_n,
        control: Some(control),
        turns,
        samples,
        end,
    };
    let secs = end.duration_since(start).as_secs_f64();
    let mut checks = vec![selective::decodable(&ps)];
    checks.extend(selective::at_most_n(&ps, &rec));
    let follow = selective::follows(&ps, &rec).map(|(c, f)| {
        checks.push(c);
        f
    });
    checks.push(selective::every_audio(&ps, &rec, start));
    let snapshot: Vec<Stats> = ps.iter().map(Participant::stats).collect();
    let rate = |i: usize| (snapshot[i].received_bytes - bytes_before[i]) as f64 / secs;
    let receivers: Vec<f64> = (0..control).map(rate).collect();
    let mean = receivers.iter().sum::<f64>() / receivers.len().max(1) as f64;
    let mut figures = vec![
        format!(
            "download per receiver ({}): mean {:.0} B/s ({:.2} Mbit/s), max {:.0} B/s",
            args.last_n
                .map_or_else(|| "every video".into(), |k| format!("last-N {k}")),
            mean,
            mean * 8.0 / 1e6,
            receivers.iter().copied().fold(0.0, f64::max)
        ),
        format!(
            "download of the control receiver (every video, top-K audio 1): {:.0} B/s ({:.2} Mbit/s)",
            rate(control),
            rate(control) * 8.0 / 1e6
        ),
        format!(
            "forwarder: {:.0} copies/s, {:.0} packets in/s over {:.1} s of turns",
            (after.tx_packets - before.tx_packets) as f64 / secs,
            (after.rx_packets - before.rx_packets) as f64 / secs,
            secs
        ),
    ];
    if let Some(f) = follow {
        figures.push(format!(
            "speaker change to the new speaker's first decodable frame: from the speaker event \
             p50 {} ms p99 {} ms; from talking p50 {} ms p99 {} ms (detection p50 {} ms p99 {} \
             ms); {} switches",
            fmt_opt(selective::quantile(&f.from_event_ms, 0.5)),
            fmt_opt(selective::quantile(&f.from_event_ms, 0.99)),
            fmt_opt(selective::quantile(&f.from_talk_ms, 0.5)),
            fmt_opt(selective::quantile(&f.from_talk_ms, 0.99)),
            fmt_opt(selective::quantile(&f.detection_ms, 0.5)),
            fmt_opt(selective::quantile(&f.detection_ms, 0.99)),
            f.from_event_ms.len()
        ));
    }
    drop(ps);
    let rows = snapshot
        .into_iter()
        .enumerate()
        .map(|(i, stats)| Row {
            name: name(i),
            role: if i == control {
                "control receiver"
            } else {
                "speaker"
            },
            stats,
        })
        .collect();
    Ok((rows, checks, figures))
}

/// A script's rows, checks and figures.
type Outcome = (Vec<Row>, Vec<Check>, Vec<String>);

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The first to join: it starts the group and, as the lowest leaf, commits until it leaves.
const KEYGEN: usize = 0;
/// Records ciphertext for the probes; present throughout.
const RECORDER: usize = 1;
/// Leaves at 40%.
const LEAVER: usize = 2;

/// Entry point of `blindfold demo`.
pub fn run_cli(args: DemoArgs) -> anyhow::Result<()> {
    if args.key_log.is_some() {
        eprintln!("WARNING: --key-log writes every SRTP master key of the demo call to a file.");
    }
    let report = run(&args)?;
    print!("{}", report.render());
    if report.passed() {
        println!("\nall {} checks held", report.checks.len());
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} checks failed",
            report.checks.iter().filter(|c| !c.passed).count(),
            report.checks.len()
        )
    }
}
