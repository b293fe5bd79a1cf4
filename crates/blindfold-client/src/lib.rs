//! blindfold-client: the headless E2EE participant (`blindfold client`), also used in-process by the demo
//! and the tests.
//!
//! Owns: joining through signalling with ephemeral ids only, STUN latching and consent on
//! the forwarder, synthetic audio (50 packet/s, ~100-octet payloads) and optional video
//! (bursts per frame), the group key schedule via `blindfold_e2ee`, and verification of every
//! received packet (authentication, content, sequence, epochs). Must not touch: the
//! forwarder's or the service's internals, and it never sends its long-lived identity
//! ([`Identity`]): user name, device name and long-term key stay on the device.
//!
//! ```text
//!  Participant::spawn ─▶ thread + current-thread tokio runtime
//!     WebSocket ◀──▶ signalling: join, publish, key messages, membership
//!     UDP socket ◀─▶ forwarder: STUN latch + consent every 5 s, SRTP out and in
//!     E2eeSession: key schedule timers, protect / unprotect, key log
//! ```
//!
//! [`Participant::probe`] shows what a participant's keys can open, stateless and with
//! every key it holds or can derive: the demo uses it to show that a leaver cannot
//! decrypt packets sent after the rekey, and a joiner cannot decrypt earlier ones.

pub mod identity;
pub mod keylog;
pub mod media;
pub mod participant;
pub mod selective;
pub mod simulcast;
mod stun_agent;
pub mod video_rx;

use std::path::PathBuf;
use std::time::Duration;

pub use identity::Identity;
pub use participant::{
    Captured, ClientError, Participant, ParticipantConfig, Phase, ProbeReport, Stats, VideoConfig,
};
pub use selective::{SelectiveConfig, SelectiveStats, VideoStart};

/// Command-line arguments of `blindfold client`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Signalling WebSocket URL.
    #[arg(
        long,
        default_value = "ws://127.0.0.1:8490/v1/ws",
        env = "BLINDFOLD_SIGNAL"
    )]
    pub signal: String,

    /// The call's 32-octet secret (64 hex digits), shared by the members out of band.
    #[arg(long, env = "BLINDFOLD_CALL_SECRET", hide_env_values = true)]
    pub call_secret: String,

    /// Your user name (never sent: only ids derived from it and the call secret are).
    #[arg(long, default_value = "user")]
    pub user: String,

    /// Your device name (never sent).
    #[arg(long, default_value = "device")]
    pub device: String,

    /// Also publish video.
    #[arg(long)]
    pub video: bool,

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
    /// (`SRTP <ssrc> <epoch> <key> <salt>`), so captures can be decrypted.
    #[arg(long, env = "BLINDFOLD_KEYLOG")]
    pub key_log: Option<PathBuf>,
}

/// Entry point of `blindfold client`: joins, runs, leaves, prints its counters as JSON.
pub fn run_cli(args: ClientArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(args.call_secret.trim(), &mut secret)
        .context("--call-secret must be 64 hex digits")?;
    let mut cfg = ParticipantConfig::new(
        &args.signal,
        secret,
        Identity::generate(&args.user, &args.device),
    );
    cfg.video = args.video.then(|| VideoConfig {
        bitrate_bps: args.video_bitrate,
        ..VideoConfig::default()
    });
    cfg.schedule.epoch_interval_ms = args.epoch_interval.max(1) * 1000;
    cfg.key_log = args.key_log;
    let p = Participant::spawn(cfg)?;
    p.wait_ready(Duration::from_secs(20))
        .context("joining the call")?;
    println!("joined {}", p.id());
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
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = wait => {}
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
