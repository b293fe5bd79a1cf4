//! blindfold-client: the headless E2EE participant (`blindfold client`), also used in-process by the demo
//! and the tests.
//!
//! Owns: joining through signalling with ephemeral ids only, getting into the call's MLS
//! group, STUN latching and consent on the forwarder, synthetic audio (50 packet/s,
//! ~100-octet payloads) and optional video (bursts per frame), and verification of every
//! received packet (authentication, content, sequence, epochs). Must not touch: the
//! forwarder's or the service's internals, and it never sends its long-lived identity
//! ([`Identity`]): user name, device name and long-term key stay on the device.
//!
//! ```text
//!  Participant::spawn ─▶ thread + current-thread tokio runtime running call::run
//!     signalling: challenge/join with a KeyPackage, MLS handshakes, Welcome, membership
//!     engine: E2eeSession (group, commits, fail closed, key schedule), key log
//!     traffic: UDP to the forwarder: STUN latch + consent, SRTP out and in, probes
//! ```
//!
//! [`Participant::probe`] shows what a participant's keys can open, stateless and with
//! every key it holds or can derive: the demo uses it to show that a leaver cannot
//! decrypt packets sent after the rekey, and a joiner cannot decrypt earlier ones.

mod call;
mod engine;
pub mod identity;
pub mod keylog;
pub mod media;
pub mod participant;
pub mod selective;
mod signalling;
pub mod simulcast;
mod stun_agent;
mod traffic;
pub mod video_rx;

use std::fmt;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

pub use identity::Identity;
pub use participant::{
    Captured, ClientError, MediaFormat, Participant, ParticipantConfig, Phase, ProbeReport, Stats,
    VideoConfig,
};
pub use selective::{SelectiveConfig, SelectiveStats, VideoStart};

/// Command-line arguments of `blindfold client`.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// Signalling WebSocket URL.
    #[arg(
        long,
        default_value = "ws://127.0.0.1:8490/v1/ws",
        env = "BLINDFOLD_SIGNAL"
    )]
    pub signal: String,

    /// The call's 32-octet secret (64 hex digits), shared by the members out of band.
    /// Visible to other users in the process list: prefer `--call-secret-file`,
    /// `--call-secret-stdin` or the environment variable.
    #[arg(
        long,
        env = "BLINDFOLD_CALL_SECRET",
        hide_env_values = true,
        required_unless_present_any = ["call_secret_file", "call_secret_stdin"],
        conflicts_with_all = ["call_secret_file", "call_secret_stdin"]
    )]
    pub call_secret: Option<String>,

    /// Read the call secret (64 hex digits) from this file.
    #[arg(long, conflicts_with = "call_secret_stdin")]
    pub call_secret_file: Option<PathBuf>,

    /// Read the call secret (64 hex digits) from the first line of standard input.
    #[arg(long)]
    pub call_secret_stdin: bool,

    /// Your user name (never sent: only ids derived from it and the call secret are).
    #[arg(long, default_value = "user")]
    pub user: String,

    /// Your device name (never sent).
    #[arg(long, default_value = "device")]
    pub device: String,

    /// Also publish video.
    #[arg(long)]
    pub video: bool,

    /// End-to-end media format: `srtp` (native-only calls) or `sframe` (the format of
    /// calls browsers are in; every member of a call must use the same).
    #[arg(long, value_enum, default_value = "srtp")]
    pub media: MediaFormat,

    /// Video bitrate in bit/s.
    #[arg(long, default_value_t = 1_500_000)]
    pub video_bitrate: u32,

    /// Stay in the call this many seconds (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,

    /// Seconds between one-way ratchet steps of the group key.
    #[arg(long, default_value_t = 30)]
    pub epoch_interval: u64,

    /// DEBUG ONLY: append every SRTP master key used or accepted to FILE
    /// (`SRTP <ssrc> <epoch> <key> <salt>`), so captures can be decrypted. Created mode
    /// 0600; a symlink or a file others can read is refused.
    #[arg(long)]
    pub key_log: Option<PathBuf>,

    /// Publish video as three simulcast layers with frame marking (with --video).
    #[arg(long)]
    pub simulcast: bool,

    /// Receive video from at most N recent speakers (plus --pin).
    #[arg(long)]
    pub last_n: Option<u32>,

    /// Receive audio from at most K speakers.
    #[arg(long)]
    pub top_k_audio: Option<u32>,

    /// A participant id (hex) whose video to always receive; repeatable.
    #[arg(long = "pin")]
    pub pins: Vec<String>,

    /// The highest simulcast layer to ask for (0 = lowest).
    #[arg(long)]
    pub layer: Option<u8>,

    /// Choose the layer from this download budget for all video, in bit/s (the
    /// participant measures what it receives against it).
    #[arg(long)]
    pub downlink_bps: Option<u64>,
}

impl fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientArgs")
            .field("signal", &self.signal)
            .field(
                "call_secret",
                &self.call_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("call_secret_file", &self.call_secret_file)
            .field("call_secret_stdin", &self.call_secret_stdin)
            .field("video", &self.video)
            .field("duration", &self.duration)
            .field("key_log", &self.key_log)
            .finish_non_exhaustive()
    }
}

impl ClientArgs {
    /// The call secret from the flag, the environment, a file or standard input.
    fn call_secret(&self) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
        use anyhow::Context as _;
        let text = zeroize::Zeroizing::new(match (&self.call_secret, &self.call_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            (None, None) => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .take(4096)
                    .read_to_string(&mut line)
                    .context("reading the call secret from standard input")?;
                line
            }
        });
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        let hex_text = text.lines().next().unwrap_or("").trim();
        hex::decode_to_slice(hex_text, secret.as_mut_slice())
            .context("the call secret must be 64 hex digits")?;
        Ok(secret)
    }
}

/// Entry point of `blindfold client`: joins, runs, leaves, prints its counters as JSON.
pub fn run_cli(args: ClientArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let secret = args.call_secret()?;
    let mut cfg = ParticipantConfig::new(
        &args.signal,
        *secret,
        Identity::generate(&args.user, &args.device),
    );
    cfg.video = args.video.then(|| VideoConfig {
        bitrate_bps: args.video_bitrate,
        ..VideoConfig::default()
    });
    cfg.schedule.epoch_interval_ms = args.epoch_interval.max(1) * 1000;
    cfg.key_log = args.key_log.clone();
    cfg.media = args.media;
    cfg.selective = SelectiveConfig {
        simulcast: args.simulcast,
        last_n: args.last_n,
        top_k_audio: args.top_k_audio,
        pins: args.pins.clone(),
        layer: args.layer,
        downlink_bps: args.downlink_bps,
        layers: None,
    };
    let p = Participant::spawn(cfg)?;
    p.wait_ready(Duration::from_secs(20))
        .context("joining the call")?;
    println!("joined {}", p.id());
    if let Some(code) = p.verification_code() {
        println!("verification code {code}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let wait = async {
            if args.duration == 0 {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(Duration::from_secs(args.duration)).await
            }
        };
        tokio::pin!(wait);
        // What the user must see: whether media goes out, and the code to compare.
        let mut shown = (p.send_state(), p.verification_code());
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = &mut wait => break,
                _ = tick.tick() => {
                    let now = (p.send_state(), p.verification_code());
                    if now != shown {
                        print_state(now.0, now.1.as_deref(), p.stats().mls_epoch);
                        shown = now;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    if matches!(p.phase(), Phase::InCall) {
        p.leave(Duration::from_secs(10))
            .context("leaving the call")?;
    }
    let (stats, err) = p.stop();
    println!("{}", serde_json::to_string(&stats)?);
    if let Some(e) = err {
        anyhow::bail!("participant failed: {e}");
    }
    Ok(())
}

fn print_state(state: Option<blindfold_e2ee::SendState>, code: Option<&str>, epoch: u64) {
    use blindfold_e2ee::{SendState, StallReason};
    let state = match state {
        Some(SendState::Sending) => "sending (encrypted)",
        Some(SendState::Stalled(StallReason::RekeyOverdue)) => {
            "STALLED: a member left and no new key came in time; not sending"
        }
        Some(SendState::Stalled(StallReason::RefusedCommit)) => {
            "STALLED: refused a commit admitting an unproven member; not sending"
        }
        Some(SendState::Stalled(StallReason::EpochSpaceExhausted)) => {
            "STALLED: the call used up its epochs; start a new call"
        }
        Some(SendState::Joining) | None => "waiting for the group",
        Some(SendState::Out) => "out of the group",
    };
    println!("state {state}");
    if let Some(code) = code {
        println!("epoch {epoch} verification code {code}");
    }
}
