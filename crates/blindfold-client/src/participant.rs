//! One headless participant's handle: its configuration, counters and phase, and the
//! thread that runs it.
//!
//! Owns: the configuration (with the call secret redacted from `Debug`), the statistics and
//! state shared with the running task, and the handle other code (the demo, tests, the CLI)
//! uses to wait, leave, stop and probe. Must not touch: the protocols (the task in
//! [`super::call`] speaks them) or any id other than the ephemeral ones on the wire.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use super::identity::Identity;
use super::selective::{SelectiveConfig, SelectiveStats, VideoStart};
use super::video_rx::VideoStats;
use blindfold_e2ee::{CallSecret, ConferenceId, ParticipantId, ScheduleConfig, SendState};
use blindfold_signal::proto::{ErrorCode, TrackRef};

/// How media is end-to-end encrypted on the wire (one format per call: see the README's
/// "How a call chooses its media format").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MediaFormat {
    /// SRTP with keys from the group (native-only calls).
    #[default]
    Srtp,
    /// Plain RTP whose payload is an SFrame frame under the group's keys: what browsers
    /// send and decrypt, so the format of calls browsers are in.
    Sframe,
}

/// Synthetic video: bitrate, packet size on the wire, frames per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoConfig {
    /// Bits per second.
    pub bitrate_bps: u32,
    /// Target datagram size in octets.
    pub packet_bytes: usize,
    /// Frames per second; each frame goes out as one burst.
    pub fps: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: 1_500_000,
            packet_bytes: 1200,
            fps: 30,
        }
    }
}

/// How a participant behaves.
#[derive(Clone)]
pub struct ParticipantConfig {
    /// Signalling WebSocket URL, e.g. `ws://127.0.0.1:8490/v1/ws`.
    pub signal_url: String,
    /// The per-call secret the members share out of band (through their messenger).
    pub call_secret: CallSecret,
    /// Who this device is; never sent.
    pub identity: Identity,
    /// Publish a 50 packet/s audio track with ~100-octet payloads.
    pub audio: bool,
    /// Publish a video track.
    pub video: Option<VideoConfig>,
    /// Receive only these tracks (default: everything from everyone).
    pub subscribe: Option<Vec<TrackRef>>,
    /// Key schedule and group timing.
    pub schedule: ScheduleConfig,
    /// Append SRTP master keys here (debugging only).
    pub key_log: Option<PathBuf>,
    /// Keep the last this many received SRTP datagrams (ciphertext) for probes.
    pub record: usize,
    /// Interval of STUN consent refreshes.
    pub consent_interval: Duration,
    /// Local UDP address (default: an ephemeral port on the candidate's loopback/any).
    pub bind: Option<SocketAddr>,
    /// How long joining (signalling, the group's Welcome, STUN latch) may take.
    pub join_timeout: Duration,
    /// Play the attacker after leaving: keep every key held at the leave (and stop its
    /// timers) so a probe shows what a leaver that kept its keys can open. An honest
    /// participant (the default) erases its group and keys when it leaves.
    pub keep_keys_after_leave: bool,
    /// The call's media format.
    pub media: MediaFormat,
    /// Selective forwarding: simulcast, last-N, pins, layer choice.
    pub selective: SelectiveConfig,
}

impl fmt::Debug for ParticipantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParticipantConfig")
            .field("signal_url", &self.signal_url)
            .field("call_secret", &self.call_secret)
            .field("identity", &self.identity)
            .field("audio", &self.audio)
            .field("video", &self.video)
            .field("schedule", &self.schedule)
            .field("key_log", &self.key_log)
            .field("keep_keys_after_leave", &self.keep_keys_after_leave)
            .field("selective", &self.selective)
            .finish_non_exhaustive()
    }
}

impl ParticipantConfig {
    /// Defaults: audio only, subscribe to all, no key log, 5 s consent refresh.
    pub fn new(signal_url: &str, call_secret: [u8; 32], identity: Identity) -> Self {
        Self {
            signal_url: signal_url.to_string(),
            call_secret: CallSecret::from_bytes(call_secret),
            identity,
            audio: true,
            video: None,
            subscribe: None,
            schedule: ScheduleConfig::default(),
            key_log: None,
            record: 0,
            consent_interval: Duration::from_secs(5),
            bind: None,
            join_timeout: Duration::from_secs(15),
            keep_keys_after_leave: false,
            media: MediaFormat::Srtp,
            selective: SelectiveConfig::default(),
        }
    }
}

/// Why a participant failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket to signalling failed.
    #[error("signalling connection: {0}")]
    Signal(String),
    /// Signalling refused a request.
    #[error("signalling refused ({code:?}): {message}")]
    Refused {
        /// Reason.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// A step did not finish in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// A socket or file operation failed.
    #[error("i/o: {0}")]
    Io(String),
    /// Signalling sent something unusable.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The participant's thread is gone.
    #[error("participant stopped")]
    Stopped,
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e.to_string())
    }
}

/// Counters of one participant.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// SRTP packets sent.
    pub sent: u64,
    /// Media ticks skipped because no sending key was held yet.
    pub unsent_no_key: u64,
    /// SRTP packets received from the forwarder (before the leave, if any).
    pub received: u64,
    /// Received packets that authenticated and decrypted.
    pub decrypted: u64,
    /// Received packets that failed authentication, or decrypted to the wrong content.
    pub failed: u64,
    /// Received packets under an epoch this participant holds no key for (e.g. sent just
    /// before it joined, while the group ratcheted).
    pub no_key: u64,
    /// Replays or packets older than the replay window.
    pub replayed: u64,
    /// Decrypted payloads that differed from what the sender built (also in `failed`).
    pub content_errors: u64,
    /// Packets from an SSRC or sender not (yet) known as a member's: dropped unverified.
    /// Signalling announces tracks before the forwarder sends them, but the two travel
    /// different paths, so the first packets of a new track can win the race.
    pub unknown_sender: u64,
    /// Packets missing in sequence, over all received streams.
    pub lost: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// Distinct epochs under which packets were decrypted or sent.
    pub epochs_seen: usize,
    /// Switches of the sending epoch to a fresh generation (after a leave or a handover).
    pub rekeys: u64,
    /// One-way ratchet steps of the sending epoch (timer or join).
    pub ratchets: u64,
    /// Longest silence of a received stream between two decrypted packets, in ms.
    pub max_gap_ms: u64,
    /// Datagrams received after the leave completed.
    pub received_after_leave: u64,
    /// Datagrams from an address other than the forwarder's.
    pub foreign: u64,
    /// RTCP/other datagrams ignored.
    pub ignored: u64,
    /// Times signalling moved the call to another forwarder (this participant re-latched).
    pub moves: u64,
    /// STUN consent refreshes answered / not answered before the next one.
    pub consent_ok: u64,
    /// See `consent_ok`.
    pub consent_missed: u64,
    /// Media ticks not sent because the member was stalled (fail closed after a leave).
    pub unsent_stalled: u64,
    /// Times sending stopped because no epoch without a leaver came in time.
    pub stalls: u64,
    /// The current MLS epoch.
    pub mls_epoch: u64,
    /// Members of the current MLS epoch.
    pub group_size: usize,
    /// The current epoch's verification code (compare it out of band).
    pub verification_code: Option<String>,
    /// MLS handshake messages refused (malformed, replayed, wrong epoch, forged).
    pub handshakes_refused: u64,
    /// KeyPackages refused by admission (no proof of the call secret, replayed).
    pub key_packages_refused: u64,
    /// Welcomes that admitted nobody here (replayed, foreign).
    pub welcomes_refused: u64,
    /// Commits refused because they admit an unproven member.
    pub commits_refused: u64,
    /// Selective forwarding: decodability, freezes, key frame requests.
    #[serde(default)]
    pub selective: SelectiveStats,
    /// Octets of the RTP datagrams received while in the call (the download).
    #[serde(default)]
    pub received_bytes: u64,
}

/// A recorded ciphertext datagram.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When it was received.
    pub at: Instant,
    /// The SRTP packet as received.
    pub data: Vec<u8>,
}

/// What a probe found: how many of the given packets this participant's keys open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// Packets tried.
    pub tried: usize,
    /// Packets that authenticated under some key this participant holds or can derive.
    pub opened: usize,
}

/// Where the participant is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Connecting, joining or latching.
    Joining,
    /// In the call (latched, tracks published).
    InCall,
    /// Left the call at the given time; the socket still counts arrivals.
    Left(Instant),
    /// The task ended, with an error if it failed.
    Ended(Option<String>),
}

#[derive(Default)]
pub(crate) struct SharedState {
    pub phase: Option<Phase>,
    pub joined_at: Option<Instant>,
    pub ready_at: Option<Instant>,
    pub send_state: Option<SendState>,
    pub stats: Stats,
    pub capture: VecDeque<Captured>,
    /// Per own SSRC: (send time, sequence) of every packet sent.
    pub sent_log: HashMap<u32, Vec<(Instant, u16)>>,
    /// (SSRC, sequence, arrival) of RTP received after the leave completed.
    pub after_leave: Vec<(u32, u16, Instant)>,
    pub ssrcs: Vec<u32>,
    /// Video starts and speaker events, for the demo's checks.
    pub starts: Vec<VideoStart>,
    pub speakers: Vec<(Instant, String)>,
    pub per_publisher: Vec<(String, VideoStats)>,
    /// Per sender: packets decrypted outside simulcast video (its audio when its video is
    /// simulcast).
    pub audio_from: HashMap<ParticipantId, u64>,
}

pub(crate) struct Shared {
    state: Mutex<SharedState>,
    pub changed: Condvar,
    /// Whether the synthetic talker talks (the audio level it sends).
    pub talking: Arc<AtomicBool>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, SharedState> {
        // Counters stay meaningful even if a panic interrupted an update.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_phase(&self, phase: Phase) {
        self.lock().phase = Some(phase);
        self.changed.notify_all();
    }

    fn wait<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&SharedState) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if let Some(v) = f(&st) {
                return Some(v);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

pub(crate) enum Command {
    Leave,
    Probe(Vec<Vec<u8>>, std::sync::mpsc::Sender<ProbeReport>),
    Stop,
}

/// A running participant. Dropping it stops it.
pub struct Participant {
    id: ParticipantId,
    conference: ConferenceId,
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Participant {
    /// Starts the participant on its own thread; it joins, latches and starts sending.
    pub fn spawn(cfg: ParticipantConfig) -> Result<Self, ClientError> {
        // A fresh id for every join: nothing links two joins, and none is reused in a call.
        let id = ParticipantId::random(&mut rand::rng());
        let conference = cfg.call_secret.conference_id();
        let shared = Arc::new(Shared {
            state: Mutex::new(SharedState {
                phase: Some(Phase::Joining),
                ..SharedState::default()
            }),
            changed: Condvar::new(),
            talking: Arc::new(AtomicBool::new(false)),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("participant".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ClientError::from)
                    .and_then(|rt| rt.block_on(super::call::run(cfg, id, sh.clone(), rx)));
                let err = result.err().map(|e| e.to_string());
                if let Some(e) = &err {
                    tracing::warn!(error = %e, "participant ended with an error");
                }
                sh.set_phase(Phase::Ended(err));
            })?;
        Ok(Self {
            id,
            conference,
            shared,
            cmd: tx,
            thread: Some(thread),
        })
    }

    /// This participant's ephemeral id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// Starts or stops talking: the audio level its packets carry.
    pub fn set_talking(&self, talking: bool) {
        self.shared.talking.store(talking, Ordering::Relaxed);
    }

    /// When each video started at this receiver (first decodable frame after none).
    pub fn video_starts(&self) -> Vec<VideoStart> {
        self.shared.lock().starts.clone()
    }

    /// The speaker events this participant received, with when.
    pub fn speaker_events(&self) -> Vec<(Instant, String)> {
        self.shared.lock().speakers.clone()
    }

    /// Per publisher (hex id), this receiver's video counters.
    pub fn video_stats(&self) -> Vec<(String, VideoStats)> {
        self.shared.lock().per_publisher.clone()
    }

    /// The call's ephemeral conference id.
    pub fn conference(&self) -> ConferenceId {
        self.conference
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.shared.lock().phase.clone().unwrap_or(Phase::Joining)
    }

    /// Waits until the participant is in the call and holds a sending key; returns when
    /// signalling admitted it.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Instant, ClientError> {
        self.shared
            .wait(timeout, |st| match &st.phase {
                Some(Phase::Ended(e)) => Some(Err(ClientError::Signal(
                    e.clone().unwrap_or_else(|| "ended".into()),
                ))),
                _ => st.ready_at.and(st.joined_at).map(Ok),
            })
            .unwrap_or(Err(ClientError::Timeout(
                "waiting for the participant to be ready",
            )))
    }

    /// When signalling admitted the participant.
    pub fn joined_at(&self) -> Option<Instant> {
        self.shared.lock().joined_at
    }

    /// Leaves the call and waits until signalling confirmed that the forwarder no longer
    /// sends to it; returns that time. The socket stays open and counts late arrivals.
    pub fn leave(&self, timeout: Duration) -> Result<Instant, ClientError> {
        self.cmd
            .send(Command::Leave)
            .map_err(|_| ClientError::Stopped)?;
        self.shared
            .wait(timeout, |st| match &st.phase {
                Some(Phase::Left(at)) => Some(Ok(*at)),
                Some(Phase::Ended(_)) => Some(Err(ClientError::Stopped)),
                _ => None,
            })
            .unwrap_or(Err(ClientError::Timeout(
                "waiting for the leave to complete",
            )))
    }

    /// Whether the participant sends, and if not, why (`None` before it joined a group).
    pub fn send_state(&self) -> Option<SendState> {
        self.shared.lock().send_state
    }

    /// The current MLS epoch's verification code.
    pub fn verification_code(&self) -> Option<String> {
        self.shared.lock().stats.verification_code.clone()
    }

    /// Waits until the send state satisfies `f`.
    pub fn wait_send_state(&self, timeout: Duration, f: impl Fn(SendState) -> bool) -> bool {
        self.shared
            .wait(timeout, |st| st.send_state.filter(|s| f(*s)).map(|_| ()))
            .is_some()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }

    /// Waits until `f` holds for the counters.
    pub fn wait_stats(&self, timeout: Duration, f: impl Fn(&Stats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(&self.stats()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        f(&self.stats())
    }

    /// The SSRCs this participant publishes.
    pub fn ssrcs(&self) -> Vec<u32> {
        self.shared.lock().ssrcs.clone()
    }

    /// The recorded ciphertext datagrams (see [`ParticipantConfig::record`]).
    pub fn captured(&self) -> Vec<Captured> {
        self.shared.lock().capture.iter().cloned().collect()
    }

    /// When this participant sent packet `seq` of its stream `ssrc`.
    pub fn send_time(&self, ssrc: u32, seq: u16) -> Option<Instant> {
        let st = self.shared.lock();
        st.sent_log
            .get(&ssrc)?
            .iter()
            .rev()
            .find(|(_, s)| *s == seq)
            .map(|(t, _)| *t)
    }

    /// How many packets this participant sent on its stream `ssrc` at or after `since`.
    pub fn sent_since(&self, ssrc: u32, since: Instant) -> usize {
        let st = self.shared.lock();
        st.sent_log
            .get(&ssrc)
            .map_or(0, |log| log.iter().filter(|(t, _)| *t >= since).count())
    }

    /// Per sender, the packets this receiver decrypted outside simulcast video (in a
    /// simulcast call: the sender's audio).
    pub fn audio_from(&self) -> HashMap<ParticipantId, u64> {
        self.shared.lock().audio_from.clone()
    }

    /// (SSRC, sequence, arrival) of every RTP datagram that arrived after the leave.
    pub fn received_after_leave(&self) -> Vec<(u32, u16, Instant)> {
        self.shared.lock().after_leave.clone()
    }

    /// Tries every key this participant holds or can derive on each packet (stateless: no
    /// replay window can mask a packet it could open). An attacker's view of a capture.
    pub fn probe(
        &self,
        packets: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> Result<ProbeReport, ClientError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.cmd
            .send(Command::Probe(packets, tx))
            .map_err(|_| ClientError::Stopped)?;
        rx.recv_timeout(timeout)
            .map_err(|_| ClientError::Timeout("waiting for a probe"))
    }

    /// Stops the participant and returns its final counters and any error it ended with.
    pub fn stop(mut self) -> (Stats, Option<String>) {
        self.stop_inner();
        let st = self.shared.lock();
        let err = match &st.phase {
            Some(Phase::Ended(e)) => e.clone(),
            _ => None,
        };
        (st.stats.clone(), err)
    }

    fn stop_inner(&mut self) {
        let _ = self.cmd.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
