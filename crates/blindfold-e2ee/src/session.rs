//! A participant's end-to-end encryption for one call: the MLS group, the media key
//! schedule and the SRTP state, driven sans-IO (inputs and the time in, outputs out).
//!
//! Owns: who commits when (the commit rule below), the fail-closed rule after a leave, the
//! participant's sending state, the SRTP sender state for its streams, one receiver per
//! remote member, and a cache of derived per-(sender, epoch) SRTP keys pruned whenever an
//! epoch is erased. Must not touch: sockets, clocks, signalling; MLS internals
//! ([`super::group`]); key derivation ([`super::schedule`]).
//!
//! # Who commits, and how a joiner is admitted
//! The delivery service (signalling) relays KeyPackages, Commits and Welcomes and keeps the
//! first Commit it receives for each epoch, broadcasting it to every member (the committer
//! included: the echo is its confirmation). Work appears when a join request (a KeyPackage
//! that passes admission, see [`super::group`]) or a leave (announced by signalling, or the
//! leaver's own signed Remove proposal) is seen. The member with the lowest leaf index that
//! is not leaving commits at once: every outstanding removal and add in one Commit, whose
//! Welcome the service hands to the joiners. The member of rank `r` commits
//! `r × commit_backoff_ms` later if the work is still outstanding then, so a committer that
//! leaves, crashes or whose commits the service drops is replaced without an election. A
//! commit not echoed within `commit_retry_ms` is sent again, byte for byte (only that
//! commit can be merged when its echo comes). Commits for a later epoch than ours are kept
//! (bounded) and tried after the next merge, so reordering costs time only.
//!
//! # Fail closed
//! A member that sees a leave starts a `leave_deadline_ms` (1.5 s) clock. If no epoch
//! without the leaver was merged by then, it stops sending ([`SendState::Stalled`], which the
//! client and the demo show) until one is. A new epoch that removes a leaver is used for
//! sending at once if its deadline has passed, and never later than that deadline. Every
//! error path leaves the member in a state that does not send: a refused commit, an
//! exhausted epoch space, a failed commit all stall rather than keep the old key.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use thiserror::Error;

use super::frames::{
    FrameError, SframeSender, clear_prefix, frame_kid, sframe_kid, sframe_open_with_meta,
    split_sframe_kid,
};
use super::group::{EpochChange, GroupError, MlsMember, Processed, verification_code};
use super::ids::{CallSecret, ParticipantId};
use super::schedule::{KeyEvent, KeySchedule, ScheduleConfig};
use super::srtp::{
    DEFAULT_ROC_SEARCH, EpochId, OpenedRtcp, RTCP_OVERHEAD, RTP_OVERHEAD, SrtpError, SrtpKeys,
    SrtpReceiver, SrtpSender, keylog_line, read_mki,
};

type CommitBytes = (Vec<u8>, Option<(Vec<ParticipantId>, Vec<u8>)>);

/// Most handshake messages for later epochs kept until they can be processed.
pub const MAX_FUTURE_MESSAGES: usize = 64;
/// Most join requests held at once.
pub const MAX_JOIN_REQUESTS: usize = 256;

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum E2eeError {
    #[error(transparent)]
    Srtp(#[from] SrtpError),
    #[error("no sending key yet (waiting for the group)")]
    NoSendingKey,
    #[error("sending stopped: {0:?}")]
    Stalled(StallReason),
    #[error("participant {0} is not a member of this call")]
    UnknownParticipant(ParticipantId),
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Why a member does not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallReason {
    /// A leave was seen and no epoch without the leaver came within the deadline.
    RekeyOverdue,
    /// A commit the delivery service ordered was refused (it admits an unproven member);
    /// the group went on without this member.
    RefusedCommit,
    /// The call used up its 65,535 MLS epochs: start a new call.
    EpochSpaceExhausted,
}

/// Where this participant's sending stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// Not in the group yet (waiting for a Welcome).
    Joining,
    /// In the group, sending under the current epoch.
    Sending,
    /// In the group but not sending: see the reason.
    Stalled(StallReason),
    /// Removed from the group, or left: every key is gone.
    Out,
}

/// An event for the session.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A handshake message (Commit or proposal) in the delivery service's order.
    Handshake(&'a [u8]),
    /// A Welcome the delivery service says is for this participant.
    Welcome(&'a [u8]),
    /// A participant asks to join, with its KeyPackage.
    JoinRequest {
        participant: ParticipantId,
        key_package: &'a [u8],
    },
    /// Signalling says this participant left.
    MemberLeft(ParticipantId),
}

/// Work and news for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Hand this to the delivery service: a Commit (with the Welcome for the participants it
    /// adds) or a proposal.
    SendHandshake {
        message: Vec<u8>,
        welcome: Option<(Vec<ParticipantId>, Vec<u8>)>,
    },
    /// A new MLS epoch: its number, the verification code and the members.
    Epoch {
        epoch: u64,
        code: String,
        roster: Vec<ParticipantId>,
    },
    /// The sending state changed.
    State(SendState),
    /// From now on, outgoing media is protected under this epoch.
    SendingEpoch(EpochId),
    /// A secret for this epoch is held.
    EpochInstalled(EpochId),
    /// This epoch's secret was erased.
    EpochErased(EpochId),
}

/// Counters of refused input (all of it network input: expected, never fatal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Handshake messages that did not process (malformed, replayed, wrong epoch, forged).
    pub handshakes: u64,
    /// KeyPackages that failed admission (bad proof, replayed, wrong participant).
    pub key_packages: u64,
    /// Welcomes that did not admit this participant.
    pub welcomes: u64,
    /// Commits refused because they admit an unproven member.
    pub commits: u64,
}

/// The participant-side E2EE state of one call.
pub struct E2eeSession {
    config: ScheduleConfig,
    me: ParticipantId,
    mls: Option<MlsMember>,
    keys: KeySchedule,
    state: SendState,
    /// Members of each held generation (for receiving under an older epoch in its grace).
    rosters: BTreeMap<u16, Vec<ParticipantId>>,
    /// Leaves seen and not yet committed: participant → fail-closed deadline.
    leaves: BTreeMap<ParticipantId, u64>,
    /// Join requests not yet committed: participant → (KeyPackage, seen at).
    joins: BTreeMap<ParticipantId, (Vec<u8>, u64)>,
    /// When the outstanding work appeared.
    work_since: Option<u64>,
    commit_at: Option<u64>,
    /// Our pending Commit and its Welcome, for resending until the service echoes it.
    my_commit: Option<CommitBytes>,
    future: VecDeque<Vec<u8>>,
    epoch_code: Option<(u64, String)>,
    refusals: Refusals,
    sender: SrtpSender,
    send_keys: Option<SrtpKeys>,
    receivers: HashMap<ParticipantId, SrtpReceiver>,
    recv_keys: HashMap<(ParticipantId, EpochId), SrtpKeys>,
    roc_search: u32,
    /// SFrame: this member's sender for the current (sending epoch, own leaf) KID.
    frame_sender: Option<SframeSender>,
    outputs: VecDeque<Output>,
}

impl E2eeSession {
    /// A participant about to join `call` as `me` (a fresh random id per join).
    pub fn new(
        config: ScheduleConfig,
        call: &CallSecret,
        me: ParticipantId,
    ) -> Result<Self, E2eeError> {
        Ok(Self {
            config,
            me,
            mls: Some(MlsMember::new(call, me)?),
            keys: KeySchedule::new(config),
            state: SendState::Joining,
            rosters: BTreeMap::new(),
            leaves: BTreeMap::new(),
            joins: BTreeMap::new(),
            work_since: None,
            commit_at: None,
            my_commit: None,
            future: VecDeque::new(),
            epoch_code: None,
            refusals: Refusals::default(),
            sender: SrtpSender::new(),
            send_keys: None,
            receivers: HashMap::new(),
            recv_keys: HashMap::new(),
            roc_search: DEFAULT_ROC_SEARCH,
            frame_sender: None,
            outputs: VecDeque::new(),
        })
    }

    pub fn me(&self) -> ParticipantId {
        self.me
    }

    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// A KeyPackage to send with the join request.
    pub fn key_package(&mut self) -> Result<Vec<u8>, E2eeError> {
        Ok(self
            .mls
            .as_mut()
            .ok_or(GroupError::NoGroup)?
            .key_package()?)
    }

    /// Starts the call's group (signalling says nobody else is in the call).
    pub fn start_alone(&mut self, now_ms: u64) -> Result<(), E2eeError> {
        let change = self
            .mls
            .as_mut()
            .ok_or(GroupError::NoGroup)?
            .create_group()?;
        self.on_epoch(change, now_ms, true);
        self.sync();
        Ok(())
    }

    pub fn state(&self) -> SendState {
        self.state
    }

    pub fn refusals(&self) -> Refusals {
        self.refusals
    }

    /// The MLS epoch and its verification code.
    pub fn verification_code(&self) -> Option<(u64, String)> {
        self.epoch_code.clone()
    }

    /// Members of the current MLS epoch (this one included).
    pub fn roster(&self) -> Vec<ParticipantId> {
        self.mls
            .as_ref()
            .map(|m| m.roster().into_iter().map(|(_, id)| id).collect())
            .unwrap_or_default()
    }

    /// Senders whose packets may be received: members of any held generation.
    pub fn known_senders(&self) -> Vec<ParticipantId> {
        let mut all: HashSet<ParticipantId> = HashSet::new();
        for r in self.rosters.values() {
            all.extend(r.iter().copied());
        }
        all.into_iter().collect()
    }

    pub fn schedule(&self) -> &KeySchedule {
        &self.keys
    }

    pub fn sending_epoch(&self) -> Option<EpochId> {
        self.keys.sending_epoch()
    }

    /// How many rollover counters to try on a late-joined stream's first packet.
    pub fn set_roc_search(&mut self, roc_search: u32) {
        self.roc_search = roc_search;
    }

    /// Handles one event. Refused input is counted and changes nothing else.
    pub fn handle_input(&mut self, input: Input<'_>, now_ms: u64) {
        match input {
            Input::Handshake(bytes) => self.handshake(bytes, now_ms),
            Input::Welcome(bytes) => self.welcome(bytes, now_ms),
            Input::JoinRequest {
                participant,
                key_package,
            } => self.join_request(participant, key_package, now_ms),
            Input::MemberLeft(id) => {
                self.joins.remove(&id);
                self.leave_seen(id, now_ms);
            }
        }
        self.plan(now_ms);
        self.sync();
    }

    /// Advances timers: activation, ratchet, erasure, the leave deadline, commits.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.state == SendState::Out {
            return;
        }
        if self.leaves.values().any(|d| *d <= now_ms) {
            self.set_state(SendState::Stalled(StallReason::RekeyOverdue));
        }
        self.keys.handle_timeout(now_ms);
        if self.commit_at.is_some_and(|t| t <= now_ms) {
            self.commit(now_ms);
        }
        self.plan(now_ms);
        self.sync();
    }

    /// When [`E2eeSession::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.state == SendState::Out {
            return None;
        }
        // Once overdue, the deadlines have done their work: only a new epoch changes things.
        let deadline = self
            .leaves
            .values()
            .copied()
            .min()
            .filter(|_| self.state != SendState::Stalled(StallReason::RekeyOverdue));
        [self.keys.poll_timeout(), self.commit_at, deadline]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Leaves the call: returns a signed proposal removing this member (for the delivery
    /// service to relay, so the group sees the leave even if signalling hides it), then
    /// erases the group and every key. Nothing can be sent or received afterwards.
    pub fn leave(&mut self) -> Option<Vec<u8>> {
        let proposal = self.mls.as_mut().and_then(|m| m.propose_leave().ok());
        self.wipe();
        proposal
    }

    /// The signed leave proposal without erasing anything: what a leaver that keeps its
    /// keys would do (the demo's attacker uses it to show what such a leaver can open).
    pub fn propose_leave(&mut self) -> Option<Vec<u8>> {
        self.mls.as_mut().and_then(|m| m.propose_leave().ok())
    }

    fn wipe(&mut self) {
        // Dropping the MLS member wipes openmls' key storage; the schedule zeroizes secrets.
        self.mls = None;
        self.keys.clear();
        self.send_keys = None;
        self.frame_sender = None;
        self.recv_keys.clear();
        self.receivers.clear();
        self.rosters.clear();
        self.joins.clear();
        self.leaves.clear();
        self.future.clear();
        self.commit_at = None;
        self.my_commit = None;
        self.set_state(SendState::Out);
        self.drain_key_events();
    }

    fn handshake(&mut self, bytes: &[u8], now_ms: u64) {
        let Some(mls) = self.mls.as_mut() else {
            return;
        };
        if !mls.in_group() {
            // A joiner hears commits before its Welcome: those for epochs after the one it
            // joins at are needed, older ones fail harmlessly later.
            self.keep_future(bytes);
            return;
        }
        match mls.process(bytes) {
            Ok(Processed::Merged(change)) => {
                self.on_epoch(change, now_ms, false);
                self.retry_future(now_ms);
            }
            Ok(Processed::SelfRemoved) => self.wipe(),
            Ok(Processed::LeaveProposed(id)) => self.leave_seen(id, now_ms),
            Ok(Processed::Future(_)) => self.keep_future(bytes),
            Ok(Processed::Ignored) => {}
            Err(GroupError::BadCredential | GroupError::Replayed) => {
                // Someone's commit admits a member that did not prove itself. The group may
                // go on without us; we must not: stop sending until an epoch we accept.
                self.refusals.commits += 1;
                self.set_state(SendState::Stalled(StallReason::RefusedCommit));
            }
            Err(_) => self.refusals.handshakes += 1,
        }
    }

    fn keep_future(&mut self, bytes: &[u8]) {
        if self.future.len() >= MAX_FUTURE_MESSAGES {
            self.future.pop_front();
            self.refusals.handshakes += 1;
        }
        self.future.push_back(bytes.to_vec());
    }

    /// Processes kept messages that the new epoch may have made current.
    fn retry_future(&mut self, now_ms: u64) {
        loop {
            let kept: Vec<Vec<u8>> = self.future.drain(..).collect();
            let before = self.mls.as_ref().and_then(MlsMember::epoch);
            for m in kept {
                let Some(mls) = self.mls.as_mut() else {
                    return;
                };
                match mls.process(&m) {
                    Ok(Processed::Future(_)) => self.future.push_back(m),
                    Ok(Processed::Merged(change)) => self.on_epoch(change, now_ms, false),
                    Ok(Processed::SelfRemoved) => {
                        self.wipe();
                        return;
                    }
                    Ok(Processed::LeaveProposed(id)) => self.leave_seen(id, now_ms),
                    Ok(Processed::Ignored) | Err(_) => {}
                }
            }
            if self.mls.as_ref().and_then(MlsMember::epoch) == before {
                return;
            }
        }
    }

    fn welcome(&mut self, bytes: &[u8], now_ms: u64) {
        let Some(mls) = self.mls.as_mut() else {
            return;
        };
        match mls.join(bytes) {
            Ok(change) => {
                self.on_epoch(change, now_ms, true);
                self.retry_future(now_ms);
            }
            Err(_) => self.refusals.welcomes += 1,
        }
    }

    fn join_request(&mut self, participant: ParticipantId, key_package: &[u8], now_ms: u64) {
        let Some(mls) = self.mls.as_ref() else {
            return;
        };
        if mls.in_group() && mls.validate_key_package(key_package, &participant).is_err() {
            self.refusals.key_packages += 1;
            return;
        }
        if self.joins.len() >= MAX_JOIN_REQUESTS || self.joins.contains_key(&participant) {
            self.refusals.key_packages += 1;
            return;
        }
        self.joins
            .insert(participant, (key_package.to_vec(), now_ms));
        self.work_since.get_or_insert(now_ms);
    }

    fn leave_seen(&mut self, id: ParticipantId, now_ms: u64) {
        if id == self.me || self.leaves.contains_key(&id) {
            return;
        }
        if !self.roster().contains(&id) {
            return;
        }
        self.leaves
            .insert(id, now_ms.saturating_add(self.config.leave_deadline_ms));
        self.work_since.get_or_insert(now_ms);
    }

    /// Decides when this member commits the outstanding work (the rule in the module doc).
    fn plan(&mut self, now_ms: u64) {
        let Some(mls) = self.mls.as_ref() else {
            return;
        };
        if !mls.in_group()
            || matches!(
                self.state,
                SendState::Stalled(StallReason::RefusedCommit | StallReason::EpochSpaceExhausted)
            )
        {
            self.commit_at = None;
            return;
        }
        let roster = mls.roster();
        self.leaves
            .retain(|id, _| roster.iter().any(|(_, m)| m == id));
        self.joins
            .retain(|id, _| !roster.iter().any(|(_, m)| m == id));
        if self.leaves.is_empty() && self.joins.is_empty() {
            self.work_since = None;
            self.commit_at = None;
            return;
        }
        if mls.has_pending_commit() {
            // Waiting for the echo; `commit` set the retry time.
            return;
        }
        let since = *self.work_since.get_or_insert(now_ms);
        let mut leaves: Vec<u32> = roster
            .iter()
            .filter(|(_, id)| !self.leaves.contains_key(id))
            .map(|(leaf, _)| *leaf)
            .collect();
        leaves.sort_unstable();
        let rank = mls
            .own_leaf()
            .and_then(|me| leaves.iter().position(|l| *l == me))
            .unwrap_or(0) as u64;
        let at = since.saturating_add(rank.saturating_mul(self.config.commit_backoff_ms));
        self.commit_at = Some(at);
        if self.commit_at.is_some_and(|t| t <= now_ms) {
            self.commit(now_ms);
        }
    }

    fn commit(&mut self, now_ms: u64) {
        self.commit_at = None;
        let Some(mls) = self.mls.as_mut() else {
            return;
        };
        if mls.has_pending_commit()
            && let Some((message, welcome)) = &self.my_commit
        {
            // Not echoed yet: the service lost it or holds it. Send the same bytes again
            // (openmls keeps one pending commit, and only these can be merged on the echo).
            self.outputs.push_back(Output::SendHandshake {
                message: message.clone(),
                welcome: welcome.clone(),
            });
            self.commit_at = Some(now_ms.saturating_add(self.config.commit_retry_ms));
            return;
        }
        let removes: Vec<ParticipantId> = self.leaves.keys().copied().collect();
        let mut adds = Vec::new();
        let mut refused = Vec::new();
        for (id, (kp, _)) in &self.joins {
            match mls.validate_key_package(kp, id) {
                Ok(kp) => adds.push(kp),
                Err(_) => refused.push(*id),
            }
        }
        for id in refused {
            self.joins.remove(&id);
            self.refusals.key_packages += 1;
        }
        if removes.is_empty() && adds.is_empty() {
            return;
        }
        match mls.commit(&removes, adds) {
            Ok(commit) => {
                self.my_commit = Some((commit.message.clone(), commit.welcome.clone()));
                self.outputs.push_back(Output::SendHandshake {
                    message: commit.message,
                    welcome: commit.welcome,
                });
            }
            Err(_) => self.refusals.handshakes += 1,
        }
        // If the service does not echo it (or it loses), make it anew after the retry time.
        self.commit_at = Some(now_ms.saturating_add(self.config.commit_retry_ms));
    }

    fn on_epoch(&mut self, change: EpochChange, now_ms: u64, first: bool) {
        // The retry timer belonged to the commit that just lost or won.
        self.commit_at = None;
        self.my_commit = None;
        if let Some(mls) = self.mls.as_mut() {
            mls.clear_pending_commit();
        }
        let Ok(generation) = u16::try_from(change.epoch) else {
            self.keys.clear();
            self.set_state(SendState::Stalled(StallReason::EpochSpaceExhausted));
            return;
        };
        // Deadlines of the leaves this epoch settles bound when it must be in use.
        let settled = self
            .leaves
            .iter()
            .filter(|(id, _)| !change.roster.contains(id))
            .map(|(_, d)| *d)
            .min();
        self.leaves.retain(|id, _| change.roster.contains(id));
        self.joins.retain(|id, _| !change.roster.contains(id));
        if self.leaves.is_empty() && self.joins.is_empty() {
            self.work_since = None;
        }
        let stalled = matches!(self.state, SendState::Stalled(_));
        let activate_at = if first || stalled {
            now_ms
        } else {
            let normal = now_ms.saturating_add(self.config.activation_ms);
            settled.map_or(normal, |d| normal.min(d))
        };
        self.keys
            .install_generation(generation, &change.secret, now_ms, activate_at);
        self.rosters.insert(generation, change.roster.clone());
        let code = verification_code(&change.authenticator);
        self.epoch_code = Some((change.epoch, code.clone()));
        self.outputs.push_back(Output::Epoch {
            epoch: change.epoch,
            code,
            roster: change.roster,
        });
        let overdue = self.leaves.values().any(|d| *d <= now_ms);
        self.set_state(if overdue {
            SendState::Stalled(StallReason::RekeyOverdue)
        } else {
            SendState::Sending
        });
    }

    fn set_state(&mut self, state: SendState) {
        if self.state != state && self.state != SendState::Out {
            self.state = state;
            self.outputs.push_back(Output::State(state));
        }
    }

    fn drain_key_events(&mut self) {
        while let Some(e) = self.keys.poll_event() {
            self.outputs.push_back(match e {
                KeyEvent::SendingEpoch(e) => Output::SendingEpoch(e),
                KeyEvent::EpochInstalled(e) => Output::EpochInstalled(e),
                KeyEvent::EpochErased(e) => Output::EpochErased(e),
            });
        }
    }

    /// Drops keys of erased epochs and departed members; rebuilds the sending keys when the
    /// sending epoch changed.
    fn sync(&mut self) {
        self.drain_key_events();
        let held: HashSet<u16> = self.keys.held_epochs().map(EpochId::generation).collect();
        self.rosters.retain(|g, _| held.contains(g));
        let known: HashSet<ParticipantId> = self.known_senders().into_iter().collect();
        let keys = &self.keys;
        self.recv_keys
            .retain(|(from, epoch), _| keys.holds(*epoch) && known.contains(from));
        self.receivers.retain(|from, _| known.contains(from));
        let epoch = keys.sending_epoch();
        // The SFrame sender's key goes with its epoch (it is rebuilt on the next frame).
        let frame_epoch = self
            .frame_sender
            .as_ref()
            .and_then(|f| split_sframe_kid(f.kid()))
            .map(|(e, _)| e);
        if frame_epoch.is_some() && frame_epoch != epoch {
            self.frame_sender = None;
        }
        if self.send_keys.as_ref().and_then(SrtpKeys::mki) != epoch {
            self.send_keys = epoch.and_then(|e| {
                keys.master_keys(&self.me, e)
                    .map(|m| SrtpKeys::derive(m.key(), m.salt(), Some(e)))
            });
        }
    }

    /// Whether media may be sent now.
    pub fn can_send(&self) -> bool {
        self.state == SendState::Sending && self.send_keys.is_some()
    }

    fn send_keys(&self) -> Result<&SrtpKeys, E2eeError> {
        match self.state {
            SendState::Sending => self.send_keys.as_ref().ok_or(E2eeError::NoSendingKey),
            SendState::Stalled(r) => Err(E2eeError::Stalled(r)),
            SendState::Joining | SendState::Out => Err(E2eeError::NoSendingKey),
        }
    }

    /// Protects the RTP packet in `buf[..len]` in place under the sending epoch; `buf`
    /// needs [`RTP_OVERHEAD`] spare octets. Returns the SRTP length. Refused while stalled.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, E2eeError> {
        self.send_keys()?;
        let keys = self.send_keys.as_ref().ok_or(E2eeError::NoSendingKey)?;
        Ok(self.sender.protect_rtp(keys, buf, len)?)
    }

    /// [`E2eeSession::protect_rtp`] on a reusable `Vec`.
    pub fn protect_rtp_vec(&mut self, packet: &mut Vec<u8>) -> Result<(), E2eeError> {
        let len = packet.len();
        packet.resize(len + RTP_OVERHEAD, 0);
        let result = self.protect_rtp(packet, len);
        packet.truncate(*result.as_ref().unwrap_or(&len));
        result.map(|_| ())
    }

    /// Protects a (compound) RTCP packet: feedback with E=0, reports encrypted.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, E2eeError> {
        self.send_keys()?;
        let keys = self.send_keys.as_ref().ok_or(E2eeError::NoSendingKey)?;
        Ok(self.sender.protect_rtcp(keys, buf, len)?)
    }

    /// [`E2eeSession::protect_rtcp`] on a reusable `Vec`.
    pub fn protect_rtcp_vec(&mut self, packet: &mut Vec<u8>) -> Result<(), E2eeError> {
        let len = packet.len();
        packet.resize(len + RTCP_OVERHEAD, 0);
        let result = self.protect_rtcp(packet, len);
        packet.truncate(*result.as_ref().unwrap_or(&len));
        result.map(|_| ())
    }

    /// SFrame (the format of calls browsers are in): encrypts one encoded frame under the
    /// sending epoch as this member's MLS leaf. With `video`, VP8's payload header stays in
    /// the clear, authenticated ([`crate::frames::clear_prefix`]). Refused exactly when
    /// [`E2eeSession::protect_rtp`] is (joining, stalled, out).
    pub fn protect_frame(&mut self, frame: &[u8], video: bool) -> Result<Vec<u8>, E2eeError> {
        self.send_keys()?;
        let epoch = self.keys.sending_epoch().ok_or(E2eeError::NoSendingKey)?;
        let leaf = self
            .mls
            .as_ref()
            .and_then(MlsMember::own_leaf)
            .ok_or(E2eeError::NoSendingKey)?;
        let kid = sframe_kid(epoch, leaf)?;
        if self.frame_sender.as_ref().map(SframeSender::kid) != Some(kid) {
            let base = self
                .keys
                .sframe_base_key(epoch, leaf)
                .ok_or(E2eeError::NoSendingKey)?;
            self.frame_sender = Some(SframeSender::new(&base, kid)?);
        }
        let sender = self.frame_sender.as_mut().ok_or(E2eeError::NoSendingKey)?;
        let n = clear_prefix(video, frame);
        let sealed = sender.protect_with_meta(&frame[n..], &frame[..n])?;
        let mut out = Vec::with_capacity(n + sealed.len());
        out.extend_from_slice(&frame[..n]);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// SFrame: verifies and decrypts a frame from another member; returns (the sender's
    /// leaf, the encoded frame). The KID names the epoch and the sender's leaf; the key is
    /// the held (or forward-ratcheted) epoch secret's, so a member removed by a Commit and
    /// a member that joined later open nothing outside their epochs. A frame under a
    /// later step that authenticates moves this member to it, as SRTP does.
    pub fn open_frame(
        &mut self,
        frame: &[u8],
        video: bool,
        now_ms: u64,
    ) -> Result<(u32, Vec<u8>), E2eeError> {
        let n = clear_prefix(video, frame);
        let (meta, sealed) = frame.split_at(n);
        let kid = frame_kid(sealed).ok_or(FrameError::Malformed)?;
        let (epoch, leaf) = split_sframe_kid(kid).ok_or(FrameError::Malformed)?;
        if Some(leaf) == self.mls.as_ref().and_then(MlsMember::own_leaf) {
            return Err(FrameError::WrongKey.into());
        }
        let base = self
            .keys
            .sframe_base_key(epoch, leaf)
            .ok_or(SrtpError::UnknownEpoch(epoch))?;
        let plain = sframe_open_with_meta(&base, kid, sealed, meta)?;
        self.keys.observe(epoch, now_ms);
        self.sync();
        let mut out = Vec::with_capacity(frame.len());
        out.extend_from_slice(meta);
        out.extend_from_slice(&plain);
        Ok((leaf, out))
    }

    /// Verifies and decrypts an SRTP packet from `from` filling `buf`; returns the RTP
    /// packet's length at the start of `buf`. The SSRC → participant mapping comes from
    /// signalling (a wrong one only makes authentication fail).
    pub fn unprotect_rtp(
        &mut self,
        from: &ParticipantId,
        buf: &mut [u8],
        now_ms: u64,
    ) -> Result<usize, E2eeError> {
        self.unprotect(from, buf, now_ms, |receiver, keys, buf| {
            receiver.unprotect_rtp(keys, buf)
        })
    }

    /// Verifies (and decrypts if E=1) an SRTCP packet from `from` filling `buf`.
    pub fn unprotect_rtcp(
        &mut self,
        from: &ParticipantId,
        buf: &mut [u8],
        now_ms: u64,
    ) -> Result<OpenedRtcp, E2eeError> {
        self.unprotect(from, buf, now_ms, |receiver, keys, buf| {
            receiver.unprotect_rtcp(keys, buf)
        })
    }

    /// The shared receive path: member check, keys for the epoch the MKI names (derived and
    /// cached on demand), the receiver's verdict, and following a sender to a later epoch.
    fn unprotect<T>(
        &mut self,
        from: &ParticipantId,
        buf: &mut [u8],
        now_ms: u64,
        open: impl FnOnce(&mut SrtpReceiver, &SrtpKeys, &mut [u8]) -> Result<T, SrtpError>,
    ) -> Result<T, E2eeError> {
        if *from == self.me || !self.rosters.values().any(|r| r.contains(from)) {
            return Err(E2eeError::UnknownParticipant(*from));
        }
        let epoch = read_mki(buf)?;
        if !self.recv_keys.contains_key(&(*from, epoch)) {
            let master = self
                .keys
                .receive_master(from, epoch)
                .ok_or(SrtpError::UnknownEpoch(epoch))?;
            self.recv_keys.insert(
                (*from, epoch),
                SrtpKeys::derive(master.key(), master.salt(), Some(epoch)),
            );
        }
        let roc_search = self.roc_search;
        let keys = &self.recv_keys[&(*from, epoch)];
        let receiver = self
            .receivers
            .entry(*from)
            .or_insert_with(|| SrtpReceiver::with_roc_search(roc_search));
        let result = open(receiver, keys, buf);
        if result.is_ok() {
            self.keys.observe(epoch, now_ms);
            self.sync();
        } else if !self.keys.holds(epoch) {
            // A forward-derived key that did not verify is not kept.
            self.recv_keys.remove(&(*from, epoch));
        }
        Ok(result?)
    }

    /// This participant's rollover counter for one of its SSRCs (to announce to joiners).
    pub fn sender_roc(&self, ssrc: u32) -> Option<u32> {
        self.sender.roc(ssrc)
    }

    /// A remote sender's announced rollover counter for an SSRC not yet received.
    pub fn set_roc_hint(&mut self, from: &ParticipantId, ssrc: u32, roc: u32) {
        let roc_search = self.roc_search;
        self.receivers
            .entry(*from)
            .or_insert_with(|| SrtpReceiver::with_roc_search(roc_search))
            .set_roc_hint(ssrc, roc);
    }

    /// The `--key-log` line for one of this participant's SSRCs in the sending epoch.
    pub fn keylog_line(&self, ssrc: u32) -> Option<String> {
        self.keylog_line_for(&self.me, ssrc, self.keys.sending_epoch()?)
    }

    /// The `--key-log` line for any sender's SSRC in a held epoch.
    pub fn keylog_line_for(
        &self,
        sender: &ParticipantId,
        ssrc: u32,
        epoch: EpochId,
    ) -> Option<String> {
        let master = self.keys.master_keys(sender, epoch)?;
        Some(keylog_line(ssrc, epoch, master.key(), master.salt()))
    }
}

impl std::fmt::Debug for E2eeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eeSession")
            .field("me", &self.me)
            .field("state", &self.state)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}
