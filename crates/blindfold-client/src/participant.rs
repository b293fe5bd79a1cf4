//! One headless participant: a thread running a small tokio runtime that owns the
//! WebSocket to signalling, the UDP socket to the forwarder and the E2EE session.
//!
//! Owns: the join, STUN latch and consent refresh, the synthetic audio/video senders, the
//! verification of every received packet, the key log, and the handle other code (the
//! demo, tests, the CLI) uses to read statistics, leave, and probe what this participant's
//! keys can decrypt. Must not touch: the forwarder's or the service's state (it only talks
//! the protocols), or any id other than the ephemeral ones on the wire.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::identity::{Identity, conference_id, key_proof, verify_key_proof};
use super::keylog::KeyLog;
use super::media::{self, RTP_HEADER, StreamStats, VIDEO_PT};
use super::selective::{Selective, SelectiveConfig, SelectiveStats, VideoStart};
use super::video_rx::VideoStats;
use blindfold_e2ee::{
    CallSecret, ConferenceId, E2eeError, E2eeSession, EpochId, HpkeTransport, Input, KeyPair,
    KeySchedule, Member, Output, ParticipantId, RTP_OVERHEAD, ScheduleConfig, ScheduleError,
    SrtpError, SrtpKeys, read_mki,
};
use blindfold_proto::stun as ice;
use blindfold_signal::proto::{
    self, ClientMessage, ErrorCode, MemberInfo, ServerMessage, Track, TrackRef,
};
use std::sync::atomic::{AtomicBool, Ordering};

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
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    /// Signalling WebSocket URL, e.g. `ws://127.0.0.1:8490/v1/ws`.
    pub signal_url: String,
    /// The per-call secret the members share out of band (through their messenger).
    pub call_secret: [u8; 32],
    /// Who this device is; never sent.
    pub identity: Identity,
    /// Publish a 50 packet/s audio track with ~100-octet payloads.
    pub audio: bool,
    /// Publish a video track.
    pub video: Option<VideoConfig>,
    /// Receive only these tracks (default: everything from everyone).
    pub subscribe: Option<Vec<TrackRef>>,
    /// Key schedule timing.
    pub schedule: ScheduleConfig,
    /// Append SRTP master keys here (debugging only).
    pub key_log: Option<PathBuf>,
    /// Keep the last this many received SRTP datagrams (ciphertext) for probes.
    pub record: usize,
    /// Interval of STUN consent refreshes.
    pub consent_interval: Duration,
    /// Local UDP address (default: an ephemeral port on the candidate's loopback/any).
    pub bind: Option<SocketAddr>,
    /// How long joining (signalling + STUN latch) may take.
    pub join_timeout: Duration,
    /// Selective forwarding: simulcast, last-N, pins, layer choice.
    pub selective: SelectiveConfig,
}

impl ParticipantConfig {
    /// Defaults: audio only, subscribe to all, no key log, 5 s consent refresh.
    pub fn new(signal_url: &str, call_secret: [u8; 32], identity: Identity) -> Self {
        Self {
            signal_url: signal_url.to_string(),
            call_secret,
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
    /// The key schedule refused our own setup.
    #[error("key schedule: {0}")]
    Schedule(#[from] ScheduleError),
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
    /// STUN consent refreshes answered / not answered before the next one.
    pub consent_ok: u64,
    /// See `consent_ok`.
    pub consent_missed: u64,
    /// Members whose key proof did not verify (ignored for key messages).
    pub bad_key_proofs: u64,
    /// Key messages the schedule refused.
    pub key_messages_refused: u64,
    /// Selective forwarding: decodability, freezes, key frame requests.
    #[serde(default)]
    pub selective: SelectiveStats,
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
struct SharedState {
    phase: Option<Phase>,
    joined_at: Option<Instant>,
    ready_at: Option<Instant>,
    stats: Stats,
    capture: VecDeque<Captured>,
    /// Per own SSRC: (send time, sequence) of every packet sent.
    sent_log: HashMap<u32, Vec<(Instant, u16)>>,
    /// (SSRC, sequence, arrival) of RTP received after the leave completed.
    after_leave: Vec<(u32, u16, Instant)>,
    ssrcs: Vec<u32>,
    /// Video starts and speaker events, for the demo's checks.
    starts: Vec<VideoStart>,
    speakers: Vec<(Instant, String)>,
    per_publisher: Vec<(String, VideoStats)>,
}

struct Shared {
    state: Mutex<SharedState>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        // Counters stay meaningful even if a panic interrupted an update.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_phase(&self, phase: Phase) {
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

enum Command {
    Leave,
    Probe(Vec<Vec<u8>>, std::sync::mpsc::Sender<ProbeReport>),
    Stop,
}

/// A running participant. Dropping it stops it.
pub struct Participant {
    id: ParticipantId,
    conference: ConferenceId,
    shared: Arc<Shared>,
    talking: Arc<AtomicBool>,
    cmd: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Participant {
    /// Starts the participant on its own thread; it joins, latches and starts sending.
    pub fn spawn(cfg: ParticipantConfig) -> Result<Self, ClientError> {
        let call = CallSecret::from_bytes(cfg.call_secret);
        let id = cfg.identity.participant_id(&call);
        let conference = conference_id(&call);
        let shared = Arc::new(Shared {
            state: Mutex::new(SharedState {
                phase: Some(Phase::Joining),
                ..SharedState::default()
            }),
            changed: Condvar::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let sh = shared.clone();
        let talking = Arc::new(AtomicBool::new(false));
        let talk = talking.clone();
        let thread = std::thread::Builder::new()
            .name("participant".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ClientError::from)
                    .and_then(|rt| rt.block_on(run(cfg, call, sh.clone(), rx, talk)));
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
            talking,
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
        self.talking.store(talking, Ordering::Relaxed);
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One own outgoing stream.
struct OutStream {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
}

impl OutStream {
    fn new() -> Self {
        Self {
            ssrc: blindfold_e2ee::random_ssrc(&mut rand::rng()),
            seq: rand::random(),
            timestamp: rand::random(),
        }
    }
}

/// The participant's state inside its task.
struct Engine {
    cfg: ParticipantConfig,
    call: CallSecret,
    me: ParticipantId,
    t0: Instant,
    session: E2eeSession<HpkeTransport>,
    shared: Arc<Shared>,
    /// SSRC → publishing member, from `joined` and `tracks`.
    ssrc_owner: HashMap<u32, ParticipantId>,
    streams: HashMap<u32, StreamStats>,
    epochs: BTreeSet<u32>,
    sending_generation: Option<u16>,
    keylog: Option<KeyLog>,
    audio: Option<OutStream>,
    video: Option<(OutStream, usize, usize)>,
    forwarder: SocketAddr,
    ice: proto::Ice,
    client_ufrag: String,
    consent_txid: Option<[u8; 12]>,
    outbox: Vec<ClientMessage>,
    left: bool,
    /// Selective forwarding (simulcast, levels, decodability, key frame requests).
    sel: Selective,
}

/// A `Send` CSPRNG for the long-lived e2ee objects (the thread RNG is not `Send`),
/// seeded from the thread RNG, itself seeded by the OS.
fn csprng() -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::from_rng(&mut rand::rng())
}

fn now_ms(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn send_ws(ws: &mut Ws, msg: ClientMessage) -> Result<(), ClientError> {
    ws.send(Message::Text(proto::encode(msg).into()))
        .await
        .map_err(|e| ClientError::Signal(e.to_string()))
}

/// Next server message; `None` when the connection closed.
async fn recv_ws(ws: &mut Ws) -> Result<Option<ServerMessage>, ClientError> {
    loop {
        match ws.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ClientError::Signal(e.to_string())),
            Some(Ok(Message::Text(t))) => {
                return proto::parse_server(t.as_str())
                    .map(Some)
                    .map_err(|e| ClientError::Protocol(e.to_string()));
            }
            Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

fn parse_id(s: &str) -> Result<ParticipantId, ClientError> {
    s.parse()
        .map_err(|_| ClientError::Protocol("malformed participant id".into()))
}

async fn run(
    cfg: ParticipantConfig,
    call: CallSecret,
    shared: Arc<Shared>,
    mut cmds: mpsc::UnboundedReceiver<Command>,
    talking: Arc<AtomicBool>,
) -> Result<(), ClientError> {
    let t0 = Instant::now();
    let me = cfg.identity.participant_id(&call);
    let keys = KeyPair::generate(&mut rand::rng());
    let public = keys.public_bytes();
    let (mut ws, _) = tokio::time::timeout(
        cfg.join_timeout,
        tokio_tungstenite::connect_async(cfg.signal_url.as_str()),
    )
    .await
    .map_err(|_| ClientError::Timeout("connecting to signalling"))?
    .map_err(|e| ClientError::Signal(e.to_string()))?;
    send_ws(
        &mut ws,
        ClientMessage::Join {
            conference: conference_id(&call).to_hex(),
            participant: me.to_hex(),
            key: hex::encode(public),
            key_proof: Some(hex::encode(key_proof(&call, &me, &public))),
        },
    )
    .await?;
    let (you, members, ice_creds, candidates) = tokio::time::timeout(cfg.join_timeout, async {
        loop {
            match recv_ws(&mut ws).await? {
                Some(ServerMessage::Joined {
                    you,
                    members,
                    ice,
                    candidates,
                }) => return Ok((you, members, ice, candidates)),
                Some(ServerMessage::Error { code, message }) => {
                    return Err(ClientError::Refused { code, message });
                }
                Some(_) => continue,
                None => return Err(ClientError::Signal("closed while joining".into())),
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout("waiting for `joined`"))??;
    shared.lock().joined_at = Some(Instant::now());

    let mut bad_proofs = 0;
    let mut roster = Vec::new();
    let mut ssrc_owner = HashMap::new();
    for m in &members {
        match member_of(&call, m) {
            Some(member) => {
                for t in &m.tracks {
                    for s in &t.ssrcs {
                        ssrc_owner.insert(*s, member.id);
                    }
                }
                roster.push(member);
            }
            None => bad_proofs += 1,
        }
    }
    let transport = HpkeTransport::new(me, keys, Box::new(csprng()));
    let me_member = Member {
        id: me,
        joined_at: you.order,
        transport_key: public.to_vec(),
    };
    let schedule = KeySchedule::new(
        cfg.schedule,
        &me_member,
        roster,
        transport,
        Box::new(csprng()),
        now_ms(t0),
    )?;
    let session = E2eeSession::new(schedule);

    let candidate = candidates
        .first()
        .ok_or_else(|| ClientError::Protocol("no forwarder candidate".into()))?;
    let forwarder = candidate
        .ip
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, candidate.port))
        .map_err(|_| ClientError::Protocol("malformed candidate".into()))?;
    let bind = cfg.bind.unwrap_or_else(|| {
        let ip: std::net::IpAddr = if forwarder.ip().is_loopback() {
            forwarder.ip()
        } else if forwarder.is_ipv4() {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        SocketAddr::new(ip, 0)
    });
    let sock = UdpSocket::bind(bind).await?;
    let keylog = match &cfg.key_log {
        Some(p) => Some(KeyLog::open(p)?),
        None => None,
    };
    let audio = cfg.audio.then(OutStream::new);
    let mut sel = Selective::new(cfg.selective.clone(), me.to_hex(), talking, t0);
    for m in &members {
        sel.on_tracks(&m.participant, &m.tracks);
    }
    let simulcast = match cfg.video {
        Some(v) if sel.simulcast() => Some(sel.start_simulcast(v.packet_bytes, RTP_OVERHEAD)),
        _ => None,
    };
    let video = cfg.video.filter(|_| simulcast.is_none()).map(|v| {
        let (n, payload) =
            media::video_frame_plan(v.bitrate_bps, v.fps, v.packet_bytes, RTP_OVERHEAD);
        (OutStream::new(), n, payload)
    });
    let mut eng = Engine {
        cfg,
        call,
        me,
        t0,
        session,
        shared: shared.clone(),
        ssrc_owner,
        streams: HashMap::new(),
        epochs: BTreeSet::new(),
        sending_generation: None,
        keylog,
        audio,
        video,
        forwarder,
        ice: ice_creds,
        client_ufrag: ice::random_ufrag(),
        consent_txid: None,
        outbox: Vec::new(),
        left: false,
        sel,
    };
    eng.shared.lock().stats.bad_key_proofs = bad_proofs;
    eng.drain_outputs();
    // Latch only once the first key is held: the forwarder starts sending on the latch,
    // and packets that arrive before the key message could never be decrypted.
    tokio::time::timeout(eng.cfg.join_timeout, async {
        while !eng.session.can_send() {
            match recv_ws(&mut ws).await? {
                Some(m) => eng.on_server(m),
                None => return Err(ClientError::Signal("closed while waiting for a key".into())),
            }
            eng.drain_outputs();
            eng.flush(&mut ws).await?;
        }
        Ok(())
    })
    .await
    .map_err(|_| ClientError::Timeout("waiting for the first key message"))??;
    eng.latch(&sock).await?;

    let cam = simulcast
        .clone()
        .or_else(|| eng.video.as_ref().map(|(v, _, _)| vec![v.ssrc]));
    let tracks = eng.sel.tracks(eng.audio.as_ref().map(|a| a.ssrc), cam);
    eng.shared.lock().ssrcs = tracks.iter().flat_map(|t| t.ssrcs.clone()).collect();
    if !tracks.is_empty() {
        send_ws(&mut ws, ClientMessage::Publish { tracks }).await?;
        // Media starts once the forwarder owns our SSRCs (`published`): packets sent
        // before that would be dropped as coming from SSRCs it does not know.
        tokio::time::timeout(eng.cfg.join_timeout, async {
            loop {
                match recv_ws(&mut ws).await? {
                    Some(ServerMessage::Published) => return Ok(()),
                    Some(ServerMessage::Error { code, message })
                        if code != ErrorCode::UnknownRecipient =>
                    {
                        return Err(ClientError::Refused { code, message });
                    }
                    Some(m) => eng.on_server(m),
                    None => return Err(ClientError::Signal("closed while publishing".into())),
                }
                eng.drain_outputs();
                eng.flush(&mut ws).await?;
            }
        })
        .await
        .map_err(|_| ClientError::Timeout("waiting for `published`"))??;
    }
    if let Some(to) = eng.cfg.subscribe.clone() {
        send_ws(&mut ws, ClientMessage::Subscribe { to: Some(to) }).await?;
    }
    if let Some(m) = eng.sel.receive_message() {
        send_ws(&mut ws, m).await?;
    }
    eng.flush(&mut ws).await?;
    shared.set_phase(Phase::InCall);
    eng.update_ready();

    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let frame =
        Duration::from_secs_f64(1.0 / f64::from(eng.cfg.video.map_or(30, |v| v.fps.max(1))));
    let mut video_tick = tokio::time::interval(frame);
    let mut consent_tick = tokio::time::interval(eng.cfg.consent_interval);
    let mut sel_tick = tokio::time::interval(Duration::from_millis(100));
    for t in [
        &mut audio_tick,
        &mut video_tick,
        &mut consent_tick,
        &mut sel_tick,
    ] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    consent_tick.reset();
    let mut ws_open = true;
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = eng
            .session
            .poll_timeout()
            .filter(|_| !eng.left)
            .map(|ms| tokio::time::Instant::from_std(t0 + Duration::from_millis(ms)))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        // Biased: a signalling message that has arrived (tracks, membership, a key) is
        // handled before the media it enables, which the forwarder only sends after it;
        // UDP comes last so its steady flow cannot starve the senders' timers.
        tokio::select! {
            biased;
            msg = recv_ws(&mut ws), if ws_open => {
                match msg {
                    Ok(Some(m)) => eng.on_server(m),
                    Ok(None) | Err(_) => {
                        ws_open = false;
                        if !eng.left {
                            // The forwarder keeps our endpoint and the group keeps its
                            // keys: media goes on with the membership we last knew (the
                            // ratchet still runs), so a signalling restart does not
                            // interrupt the call. Rejoining is the application's call.
                            tracing::warn!("signalling connection lost; media continues");
                        }
                    }
                }
            }
            _ = audio_tick.tick(), if eng.audio.is_some() && !eng.left => eng.send_audio(&sock).await,
            _ = video_tick.tick(), if (eng.video.is_some() || simulcast.is_some()) && !eng.left => eng.send_video(&sock).await,
            _ = sel_tick.tick(), if !eng.left => eng.selective_tick(&sock).await,
            _ = consent_tick.tick(), if !eng.left => eng.refresh_consent(&sock).await,
            _ = tokio::time::sleep_until(deadline) => {
                if let Err(e) = eng.session.handle_timeout(now_ms(t0)) {
                    tracing::warn!(error = %e, "key schedule timer");
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Command::Leave) => {
                    if !eng.left && ws_open {
                        send_ws(&mut ws, ClientMessage::Leave).await?;
                        // Stop publishing at once; the leave completes on `left`.
                        eng.audio = None;
                        eng.video = None;
                        eng.sel.stop_sending();
                    }
                }
                Some(Command::Probe(packets, reply)) => {
                    let _ = reply.send(eng.probe(&packets));
                }
                Some(Command::Stop) | None => break,
            },
            r = sock.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => match eng.answer_check(&buf[..n], from) {
                        Some(a) => drop(sock.send_to(&a, from).await),
                        None => eng.on_datagram(&mut buf[..n], from),
                    },
                    // ICMP errors surface here on Linux; the next datagram may be fine.
                    Err(e) => tracing::debug!(error = %e, "udp receive failed"),
                }
            }
        }
        eng.drain_outputs();
        if ws_open {
            eng.flush(&mut ws).await?;
        }
        eng.update_ready();
    }
    if ws_open && !eng.left {
        let _ = ws.close(None).await;
    }
    Ok(())
}

/// A roster member from signalling, if its key proof verifies.
fn member_of(call: &CallSecret, m: &MemberInfo) -> Option<Member> {
    let id: ParticipantId = m.participant.parse().ok()?;
    let key = hex::decode(&m.key).ok()?;
    let proof = hex::decode(m.key_proof.as_deref()?).ok()?;
    verify_key_proof(call, &id, &key, &proof).then_some(Member {
        id,
        joined_at: m.order,
        transport_key: key,
    })
}

impl Engine {
    fn now(&self) -> u64 {
        now_ms(self.t0)
    }

    async fn flush(&mut self, ws: &mut Ws) -> Result<(), ClientError> {
        for m in std::mem::take(&mut self.outbox) {
            send_ws(ws, m).await?;
        }
        Ok(())
    }

    fn update_ready(&self) {
        if self.session.can_send() {
            let mut st = self.shared.lock();
            if st.ready_at.is_none() && st.phase == Some(Phase::InCall) {
                st.ready_at = Some(Instant::now());
                drop(st);
                self.shared.changed.notify_all();
            }
        }
    }

    /// STUN-latches the socket to our endpoint, retrying until a verified answer.
    async fn latch(&mut self, sock: &UdpSocket) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + self.cfg.join_timeout;
        let mut buf = vec![0u8; 2048];
        while tokio::time::Instant::now() < deadline {
            let txid: [u8; 12] = rand::random();
            let req = ice::binding_request(
                txid,
                &self.ice.ufrag,
                &self.client_ufrag,
                self.ice.pwd.as_bytes(),
            );
            sock.send_to(&req, self.forwarder).await?;
            let until = tokio::time::Instant::now() + Duration::from_millis(250);
            while let Ok(r) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
                let (n, from) = r?;
                // The forwarder checks our address before it sends media to it.
                if let Some(a) = self.answer_check(&buf[..n], from) {
                    sock.send_to(&a, from).await?;
                } else if from == self.forwarder
                    && ice::parse_binding_success(&buf[..n], &txid, self.ice.pwd.as_bytes()).is_ok()
                {
                    return Ok(());
                }
            }
        }
        Err(ClientError::Timeout("latching to the forwarder"))
    }

    /// Our answer to the forwarder's return-path check, if `pkt` is one.
    fn answer_check(&self, pkt: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        crate::stun_agent::answer(pkt, from, self.forwarder, &self.ice, &self.client_ufrag)
    }

    async fn refresh_consent(&mut self, sock: &UdpSocket) {
        if self.consent_txid.take().is_some() {
            self.shared.lock().stats.consent_missed += 1;
        }
        let txid: [u8; 12] = rand::random();
        let req = ice::binding_request(
            txid,
            &self.ice.ufrag,
            &self.client_ufrag,
            self.ice.pwd.as_bytes(),
        );
        if sock.send_to(&req, self.forwarder).await.is_ok() {
            self.consent_txid = Some(txid);
        }
    }

    fn on_server(&mut self, msg: ServerMessage) {
        let now = self.now();
        let result = match msg {
            ServerMessage::MemberJoined { member } => {
                self.sel.on_tracks(&member.participant, &member.tracks);
                for t in &member.tracks {
                    self.own_tracks(&member.participant, t);
                }
                match member_of(&self.call, &member) {
                    Some(m) => self.session.handle_input(Input::MemberJoined(m), now),
                    None => {
                        self.shared.lock().stats.bad_key_proofs += 1;
                        Ok(())
                    }
                }
            }
            ServerMessage::MemberLeft { participant } => {
                self.sel.on_left(&participant);
                match parse_id(&participant) {
                    Ok(id) => {
                        self.ssrc_owner.retain(|_, owner| *owner != id);
                        self.session.handle_input(Input::MemberLeft(id), now)
                    }
                    Err(_) => Ok(()),
                }
            }
            ServerMessage::Tracks {
                participant,
                tracks,
            } => {
                self.sel.on_tracks(&participant, &tracks);
                if let Ok(id) = parse_id(&participant) {
                    self.ssrc_owner.retain(|_, owner| *owner != id);
                }
                for t in &tracks {
                    self.own_tracks(&participant, t);
                }
                Ok(())
            }
            ServerMessage::Key { from, message } => {
                match (parse_id(&from), hex::decode(&message)) {
                    (Ok(from), Ok(bytes)) => {
                        let r = self.session.handle_input(
                            Input::KeyMessage {
                                from,
                                message: &bytes,
                            },
                            now,
                        );
                        if r.is_err() {
                            self.shared.lock().stats.key_messages_refused += 1;
                        }
                        r
                    }
                    _ => Ok(()),
                }
            }
            ServerMessage::Left => {
                self.left = true;
                self.shared.set_phase(Phase::Left(Instant::now()));
                Ok(())
            }
            ServerMessage::Error { code, message } => {
                tracing::warn!(?code, %message, "signalling refused a request");
                Ok(())
            }
            ServerMessage::Speakers { dominant, recent } => {
                self.sel.on_speakers(dominant, recent);
                Ok(())
            }
            ServerMessage::Joined { .. } | ServerMessage::Published => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "key schedule refused an input");
        }
    }

    fn own_tracks(&mut self, participant: &str, t: &Track) {
        if let Ok(id) = parse_id(participant) {
            for s in &t.ssrcs {
                self.ssrc_owner.insert(*s, id);
            }
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::SendKeyMessage { to, message } => self.outbox.push(ClientMessage::Key {
                    to: to.to_hex(),
                    message: hex::encode(message),
                }),
                Output::SendingEpoch(epoch) => self.on_sending_epoch(epoch),
                Output::EpochInstalled(_) | Output::EpochErased(_) => {}
            }
        }
    }

    fn on_sending_epoch(&mut self, epoch: EpochId) {
        {
            let mut st = self.shared.lock();
            match self.sending_generation {
                Some(g) if g != epoch.generation() => st.stats.rekeys += 1,
                Some(_) => st.stats.ratchets += 1,
                None => {}
            }
            self.epochs.insert(epoch.as_u32());
            st.stats.epochs_seen = self.epochs.len();
        }
        self.sending_generation = Some(epoch.generation());
        if let Some(log) = &mut self.keylog {
            let own: Vec<u32> = self
                .audio
                .iter()
                .map(|a| a.ssrc)
                .chain(self.video.iter().map(|v| v.0.ssrc))
                .chain(self.sel.own_ssrcs())
                .collect();
            for ssrc in own {
                if let Some(line) = self.session.keylog_line(ssrc) {
                    log.record(ssrc, epoch.as_u32(), &line);
                }
            }
        }
    }

    fn protect_and_log(&mut self, mut pkt: Vec<u8>, ssrc: u32, seq: u16) -> Option<Vec<u8>> {
        match self.session.protect_rtp_vec(&mut pkt) {
            Ok(()) => {
                let mut st = self.shared.lock();
                st.stats.sent += 1;
                st.sent_log
                    .entry(ssrc)
                    .or_default()
                    .push((Instant::now(), seq));
                Some(pkt)
            }
            Err(E2eeError::NoSendingKey) => {
                self.shared.lock().stats.unsent_no_key += 1;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "protecting a packet failed");
                None
            }
        }
    }

    async fn send_audio(&mut self, sock: &UdpSocket) {
        let Some(a) = &mut self.audio else { return };
        let (ssrc, seq) = (a.ssrc, a.seq);
        let pkt = self.sel.audio_packet(ssrc, seq, a.timestamp, RTP_OVERHEAD);
        a.seq = a.seq.wrapping_add(1);
        a.timestamp = a.timestamp.wrapping_add(960);
        if let Some(p) = self.protect_and_log(pkt, ssrc, seq) {
            let _ = sock.send_to(&p, self.forwarder).await;
        }
    }

    async fn send_video(&mut self, sock: &UdpSocket) {
        for (ssrc, seq, pkt) in self.sel.video_packets(RTP_OVERHEAD) {
            if let Some(p) = self.protect_and_log(pkt, ssrc, seq) {
                let _ = sock.send_to(&p, self.forwarder).await;
            }
        }
        let Some((v, n, payload)) = &mut self.video else {
            return;
        };
        let (n, payload) = (*n, *payload);
        let ssrc = v.ssrc;
        let mut burst = Vec::with_capacity(n);
        for i in 0..n {
            burst.push((
                v.seq,
                media::build_rtp(
                    ssrc,
                    v.seq,
                    v.timestamp,
                    VIDEO_PT,
                    i + 1 == n,
                    payload,
                    RTP_OVERHEAD,
                ),
            ));
            v.seq = v.seq.wrapping_add(1);
        }
        v.timestamp = v
            .timestamp
            .wrapping_add(90_000 / self.cfg.video.map_or(30, |c| c.fps.max(1)));
        for (seq, pkt) in burst {
            if let Some(p) = self.protect_and_log(pkt, ssrc, seq) {
                let _ = sock.send_to(&p, self.forwarder).await;
            }
        }
    }

    fn on_datagram(&mut self, data: &mut [u8], from: SocketAddr) {
        let now = self.now();
        if from != self.forwarder {
            self.shared.lock().stats.foreign += 1;
            return;
        }
        let Some(&first) = data.first() else { return };
        if first <= 3 {
            if let Some(txid) = self.consent_txid
                && ice::parse_binding_success(data, &txid, self.ice.pwd.as_bytes()).is_ok()
            {
                self.consent_txid = None;
                self.shared.lock().stats.consent_ok += 1;
            }
            return;
        }
        // RFC 5761: payload types 192-223 in the second octet are RTCP.
        if (128..=191).contains(&first) && data.len() >= 8 && (192..=223).contains(&data[1]) {
            if !self.left {
                self.on_rtcp(data, now);
            }
            return;
        }
        if !(128..=191).contains(&first) || data.len() < RTP_HEADER {
            self.shared.lock().stats.ignored += 1;
            return;
        }
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let seq = u16::from_be_bytes([data[2], data[3]]);
        if self.left {
            let mut st = self.shared.lock();
            st.stats.received_after_leave += 1;
            st.after_leave.push((ssrc, seq, Instant::now()));
            return;
        }
        {
            let mut st = self.shared.lock();
            st.stats.received += 1;
            if self.cfg.record > 0 {
                if st.capture.len() >= self.cfg.record {
                    st.capture.pop_front();
                }
                st.capture.push_back(Captured {
                    at: Instant::now(),
                    data: data.to_vec(),
                });
            }
        }
        let epoch = read_mki(data).ok();
        let Some(sender) = self.ssrc_owner.get(&ssrc).copied() else {
            tracing::debug!("packet from an unmapped SSRC");
            self.shared.lock().stats.unknown_sender += 1;
            return;
        };
        let wire_len = data.len();
        let result = self.session.unprotect_rtp(&sender, data, now);
        let mut st = self.shared.lock();
        match result {
            Ok(len) => {
                let ok = blindfold_e2ee::srtp::parse_rtp_header(&data[..len]).is_ok_and(|h| {
                    if self.sel.is_video(ssrc) {
                        self.sel.on_video(ssrc, seq, &data[h.len..len], wire_len)
                    } else {
                        media::check_payload(ssrc, seq, &data[h.len..len])
                    }
                });
                if !ok {
                    st.stats.content_errors += 1;
                    st.stats.failed += 1;
                    return;
                }
                st.stats.decrypted += 1;
                let s = self.streams.entry(ssrc).or_default();
                s.on_packet(seq, now);
                st.stats.max_gap_ms = st.stats.max_gap_ms.max(s.max_gap_ms);
                st.stats.lost = self.streams.values().map(StreamStats::lost).sum();
                st.stats.reordered = self.streams.values().map(|s| s.reordered).sum();
                if let Some(e) = epoch {
                    self.epochs.insert(e.as_u32());
                    st.stats.epochs_seen = self.epochs.len();
                    if let Some(log) = &mut self.keylog
                        && let Some(line) = self.session.keylog_line_for(&sender, ssrc, e)
                    {
                        log.record(ssrc, e.as_u32(), &line);
                    }
                }
            }
            Err(E2eeError::Srtp(SrtpError::UnknownEpoch(e))) => {
                tracing::debug!(epoch = %e, sending = ?self.session.sending_epoch(), "no key for a packet");
                st.stats.no_key += 1;
            }
            Err(E2eeError::Srtp(SrtpError::Replay | SrtpError::TooOld)) => st.stats.replayed += 1,
            Err(E2eeError::UnknownParticipant(_)) => st.stats.unknown_sender += 1,
            Err(e) => {
                tracing::debug!(error = %e, "a received packet failed");
                st.stats.failed += 1;
            }
        }
    }

    /// Receiver feedback from the forwarder (SRTCP, E=0): a key frame request for one of
    /// our simulcast layers.
    fn on_rtcp(&mut self, data: &mut [u8], now: u64) {
        let sender = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let Some(from) = self.ssrc_owner.get(&sender).copied() else {
            self.shared.lock().stats.ignored += 1;
            return;
        };
        match self.session.unprotect_rtcp(&from, data, now) {
            Ok(opened) => self.sel.on_rtcp(&data[..opened.len]),
            Err(_) => self.shared.lock().stats.ignored += 1,
        }
    }

    /// Selective forwarding's periodic work: key frame requests (PLI, as SRTCP with E=0
    /// from our audio SSRC) for videos that should be coming and are not, a layer change
    /// to tell signalling about, and the counters for the handle.
    async fn selective_tick(&mut self, sock: &UdpSocket) {
        let plis = self.sel.tick();
        if let Some(me) = self.audio.as_ref().map(|a| a.ssrc) {
            for media_ssrc in plis {
                let mut pli = vec![0x81, 206, 0, 2];
                pli.extend_from_slice(&me.to_be_bytes());
                pli.extend_from_slice(&media_ssrc.to_be_bytes());
                if self.session.protect_rtcp_vec(&mut pli).is_ok() {
                    let _ = sock.send_to(&pli, self.forwarder).await;
                }
            }
        }
        if let Some(m) = self.sel.take_layer_change() {
            self.outbox.push(m);
        }
        let (starts, speakers) = self.sel.drain_logs();
        let mut st = self.shared.lock();
        st.stats.selective = self.sel.stats();
        st.starts.extend(starts);
        st.speakers.extend(speakers);
        st.per_publisher = self.sel.per_publisher();
    }

    /// Every key this participant holds or can derive, tried on every packet.
    fn probe(&self, packets: &[Vec<u8>]) -> ProbeReport {
        let schedule = self.session.schedule();
        let mut senders: Vec<ParticipantId> = schedule.members().copied().collect();
        senders.push(self.me);
        let held: Vec<EpochId> = schedule.held_epochs().collect();
        let mut report = ProbeReport::default();
        for pkt in packets {
            report.tried += 1;
            let Ok(named) = read_mki(pkt) else { continue };
            let mut epochs = held.clone();
            epochs.push(named);
            let ssrc = pkt
                .get(8..12)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let owners: Vec<ParticipantId> = match ssrc.and_then(|s| self.ssrc_owner.get(&s)) {
                Some(o) => vec![*o],
                None => senders.clone(),
            };
            let opened = owners.iter().any(|sender| {
                epochs.iter().any(|&epoch| {
                    let Some(master) = schedule.receive_master(sender, epoch) else {
                        return false;
                    };
                    let keys = SrtpKeys::derive(master.key(), master.salt(), Some(epoch));
                    (0..=2u32).any(|roc| {
                        let mut copy = pkt.clone();
                        let n = copy.len();
                        // Name the key being tried, so only the tag decides.
                        copy[n - 4..].copy_from_slice(&epoch.to_bytes());
                        keys.decrypt_rtp(&mut copy, roc).is_ok()
                    })
                })
            });
            if opened {
                report.opened += 1;
            }
        }
        report
    }
}
