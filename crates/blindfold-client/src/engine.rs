//! The participant's state inside its task, and how signalling messages and the E2EE
//! session's outputs change it.
//!
//! Owns: the E2EE session, the SSRC → member map, the key log, the outbox of messages for
//! signalling, and publishing the session's state (sending or stalled, epoch, verification
//! code) to the participant's handle. Must not touch: sockets (see [`super::traffic`] for
//! media and [`super::call`] for the loop that owns the sockets).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::keylog::KeyLog;
use super::media::StreamStats;
use super::participant::ClientError;
use super::participant::{ParticipantConfig, Phase, Shared};
use super::selective::Selective;
use super::signalling::{Ws, parse_id, send_ws};
use blindfold_e2ee::{E2eeSession, EpochId, Input, Output, ParticipantId, SendState};
use blindfold_signal::proto::{self, ClientMessage, ServerMessage, Track, WelcomeOut};

/// One own outgoing stream.
pub(crate) struct OutStream {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
}

impl OutStream {
    pub fn new() -> Self {
        Self {
            ssrc: blindfold_e2ee::random_ssrc(&mut rand::rng()),
            seq: rand::random(),
            timestamp: rand::random(),
        }
    }
}

pub(crate) fn now_ms(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The participant's state inside its task.
pub(crate) struct Engine {
    pub cfg: ParticipantConfig,
    pub me: ParticipantId,
    pub t0: Instant,
    pub session: E2eeSession,
    pub shared: Arc<Shared>,
    /// SSRC → publishing member, from `joined` and `tracks`.
    pub ssrc_owner: HashMap<u32, ParticipantId>,
    pub streams: HashMap<u32, StreamStats>,
    pub epochs: BTreeSet<u32>,
    pub sending_generation: Option<u16>,
    pub keylog: Option<KeyLog>,
    pub audio: Option<OutStream>,
    pub video: Option<(OutStream, usize, usize)>,
    pub forwarder: SocketAddr,
    pub ice: proto::Ice,
    pub client_ufrag: String,
    pub consent_txid: Option<[u8; 12]>,
    /// The call moved to another forwarder: latch there before sending on.
    pub relatch: bool,
    /// The forwarder address has answered our check with the endpoint's pwd. Media goes
    /// only to such an address: a `moved` naming one that never answers (a dead host, or
    /// a victim a hostile signalling service chose) gets STUN checks and nothing more.
    pub path_proven: bool,
    pub outbox: Vec<ClientMessage>,
    /// The leave was asked for: timers stop, nothing more is sent or counted as received.
    pub leaving: bool,
    /// The service confirmed the leave.
    pub left: bool,
    /// Selective forwarding: simulcast, levels, decodability, key frame requests.
    pub sel: Selective,
}

impl Engine {
    pub fn now(&self) -> u64 {
        now_ms(self.t0)
    }

    pub async fn flush(&mut self, ws: &mut Ws) -> Result<(), ClientError> {
        for m in std::mem::take(&mut self.outbox) {
            send_ws(ws, m).await?;
        }
        Ok(())
    }

    /// Marks the participant ready once it is in the call and holds a sending key.
    pub fn update_ready(&self) {
        if self.session.can_send() {
            let mut st = self.shared.lock();
            if st.ready_at.is_none() && st.phase == Some(Phase::InCall) {
                st.ready_at = Some(Instant::now());
                drop(st);
                self.shared.changed.notify_all();
            }
        }
    }

    pub fn on_server(&mut self, msg: ServerMessage) {
        let now = self.now();
        if self.leaving && !matches!(msg, ServerMessage::Left | ServerMessage::Error { .. }) {
            // Leaving: the group's news is no longer ours to act on (and an attacker that
            // keeps its keys freezes them as they were at the leave).
            return;
        }
        match msg {
            ServerMessage::MemberJoined {
                member,
                key_package,
            } => {
                self.sel.on_tracks(&member.participant, &member.tracks);
                for t in &member.tracks {
                    self.own_tracks(&member.participant, t);
                }
                if let (Ok(id), Ok(kp)) = (parse_id(&member.participant), hex::decode(key_package))
                {
                    self.session.handle_input(
                        Input::JoinRequest {
                            participant: id,
                            key_package: &kp,
                        },
                        now,
                    );
                }
            }
            ServerMessage::MemberLeft { participant } => {
                self.sel.on_left(&participant);
                if let Ok(id) = parse_id(&participant) {
                    self.ssrc_owner.retain(|_, owner| *owner != id);
                    self.session.handle_input(Input::MemberLeft(id), now);
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
            }
            ServerMessage::Handshake { message, .. } => match hex::decode(message) {
                Ok(bytes) => self.session.handle_input(Input::Handshake(&bytes), now),
                Err(_) => self.shared.lock().stats.handshakes_refused += 1,
            },
            ServerMessage::Welcome { message } => match hex::decode(message) {
                Ok(bytes) => self.session.handle_input(Input::Welcome(&bytes), now),
                Err(_) => self.shared.lock().stats.welcomes_refused += 1,
            },
            ServerMessage::Moved { ice, candidates } => {
                // Only the media path changes: the group and its keys stay as they are.
                match candidates.first().and_then(|c| {
                    c.ip.parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, c.port))
                }) {
                    Some(to) => {
                        self.forwarder = to;
                        self.ice = ice;
                        self.client_ufrag = blindfold_proto::stun::random_ufrag();
                        self.consent_txid = None;
                        self.relatch = true;
                        self.path_proven = false;
                        self.shared.lock().stats.moves += 1;
                    }
                    None => tracing::warn!("a move without a usable candidate"),
                }
            }
            ServerMessage::Left => {
                self.left = true;
                self.shared.set_phase(Phase::Left(Instant::now()));
            }
            ServerMessage::Error { code, message } => {
                tracing::warn!(?code, %message, "signalling refused a request");
            }
            ServerMessage::Speakers { dominant, recent } => {
                self.sel.on_speakers(dominant, recent);
            }
            ServerMessage::Joined { .. }
            | ServerMessage::Challenge { .. }
            | ServerMessage::Published => {}
        }
    }

    pub fn own_tracks(&mut self, participant: &str, t: &Track) {
        if let Ok(id) = parse_id(participant) {
            for s in &t.ssrcs {
                self.ssrc_owner.insert(*s, id);
            }
        }
    }

    /// Moves the session's outputs to the outbox, the handle and the key log.
    pub fn drain_outputs(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::SendHandshake { message, welcome } => {
                    self.outbox.push(ClientMessage::Handshake {
                        message: hex::encode(message),
                        welcome: welcome.map(|(to, w)| WelcomeOut {
                            to: to.iter().map(ParticipantId::to_hex).collect(),
                            message: hex::encode(w),
                        }),
                    });
                }
                Output::Epoch {
                    epoch,
                    code,
                    roster,
                } => {
                    let mut st = self.shared.lock();
                    st.stats.mls_epoch = epoch;
                    st.stats.verification_code = Some(code);
                    st.stats.group_size = roster.len();
                }
                Output::State(state) => self.on_state(state),
                Output::SendingEpoch(epoch) => self.on_sending_epoch(epoch),
                Output::EpochInstalled(_) | Output::EpochErased(_) => {}
            }
        }
        let r = self.session.refusals();
        let mut st = self.shared.lock();
        st.stats.handshakes_refused = r.handshakes;
        st.stats.key_packages_refused = r.key_packages;
        st.stats.welcomes_refused = r.welcomes;
        st.stats.commits_refused = r.commits;
    }

    fn on_state(&mut self, state: SendState) {
        if matches!(state, SendState::Stalled(_)) {
            tracing::warn!(?state, "not sending: no epoch without the leaver yet");
            self.shared.lock().stats.stalls += 1;
        }
        self.shared.lock().send_state = Some(state);
        self.shared.changed.notify_all();
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

    /// Leaves: the signed self-removal goes to the group first, then the leave to the
    /// service. An honest participant erases its group and keys at once; the demo's
    /// attacker ([`ParticipantConfig::keep_keys_after_leave`]) keeps them to probe with.
    pub fn leave(&mut self) {
        self.leaving = true;
        let proposal = if self.cfg.keep_keys_after_leave {
            self.session.propose_leave()
        } else {
            self.session.leave()
        };
        self.drain_outputs();
        if let Some(message) = proposal {
            self.outbox.push(ClientMessage::Handshake {
                message: hex::encode(message),
                welcome: None,
            });
        }
        self.outbox.push(ClientMessage::Leave);
        // Stop publishing at once; the leave completes on `left`.
        self.audio = None;
        self.video = None;
        self.sel.stop_sending();
    }
}
