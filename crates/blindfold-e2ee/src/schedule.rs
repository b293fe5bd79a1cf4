//! The group key schedule, sans-IO: membership events, key messages and the time go in;
//! key messages to send, epoch changes and keys come out. No clock, socket or thread here.
//!
//! Owns: which epoch secret is in force for sending, which are held for receiving and for
//! how long, who the key generator is, when to ratchet and when to rekey, and the
//! derivation of per-sender SRTP master keys from an epoch secret.
//!
//! Must not touch: packet formats (that is [`super::srtp`]), the sealing construction
//! (that is [`super::seal`]), or moving bytes.
//!
//! # The design
//! - **Epoch ids** are `generation(16) | step(16)` (the SRTP MKI). A generation begins with
//!   a fresh random 32-octet secret; each step is `HKDF(secret, "ratchet", next epoch id)`,
//!   one-way, so holding step `s` yields `s+k` but never `s-1`.
//! - **Key generator**: the longest-present member, i.e. the lowest `(joined_at, id)`, where
//!   `joined_at` is the join order the signalling service assigns (the same for every
//!   observer). When it leaves, the next one takes over without any election message.
//! - **Timer**: every `epoch_interval_ms` (30 s) the group ratchets one step, no message.
//!   The key generator steps on its own timer; others step `follower_slack_ms` later unless
//!   they saw (and authenticated) a packet under the next step first, which they then adopt.
//!   So no member runs ahead of the key generator unless signalling skew exceeds the slack.
//! - **Join**: every member steps once on the join event; the key generator seals only the
//!   new step's secret to the joiner, who can send and receive at once but cannot derive
//!   any earlier step.
//! - **Leave**: the key generator draws a fresh random secret in a new generation, seals it
//!   to every remaining member and switches to it `rekey_activation_ms` (500 ms) later;
//!   members switch the same delay after receipt, or at once on authenticating a packet
//!   under it. With signalling latency under 1.5 s the new key is in use within 2 s.
//! - **Grace**: when the sending epoch changes, every older secret is kept `grace_ms` (2 s)
//!   for reordered packets, then erased (zeroized) along with keys derived from it.
//! - **No epoch id reuse**: a key generator's next generation is one above the highest it
//!   has seen. A *new* key generator skips [`HANDOVER_SKIP`] generations: every generation
//!   the old one issued while the new one was a member was sealed to the new one, so the
//!   only ones it can have missed are those still in flight when the old one left, far
//!   fewer than 256. A group's first generation is random in `0..0x4000`. Receivers refuse
//!   a key message for an epoch they hold under a different secret, and any generation
//!   below their newest.
//!
//! # Per-sender keys and why no two senders share a (key, nonce)
//! Each sender's SRTP master key and salt are
//! `HKDF-SHA256(epoch secret, label, epoch id || sender id)` with distinct labels for key
//! and salt. The AES-GCM nonce is `salt XOR (SSRC, ROC, SEQ)` under the session key derived
//! from that master key. Two senders have distinct ephemeral ids (the schedule refuses a
//! duplicate member), so their HKDF inputs differ and their master keys are independent
//! pseudo-random values: even with equal SSRCs and sequence numbers they encrypt under
//! different keys, and a collision of two 128-bit keys has probability about 2^-128 per
//! pair. Within one sender, distinct SSRCs give distinct nonces, and
//! [`super::srtp::SrtpSender`] refuses to reuse an index; each epoch has its own key, so
//! the index carrying on across epochs never repeats a (key, nonce).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use hkdf::Hkdf;
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ids::ParticipantId;
use super::seal::{
    BoxRng, KeyMessageHeader, KeyPurpose, KeyTransport, SealError, open_key_message,
    seal_key_message,
};
use super::srtp::{EpochId, MASTER_KEY_LEN, MASTER_SALT_LEN};

/// Generations a new key generator skips past the highest it has seen.
pub const HANDOVER_SKIP: u16 = 256;
/// Length of an epoch secret.
pub const SECRET_LEN: usize = 32;

const RATCHET_SALT: &[u8] = b"blindfold/v1 epoch ratchet";
const SRTP_SALT: &[u8] = b"blindfold/v1 srtp";
const LABEL_MASTER_KEY: &[u8] = b"blindfold/v1 srtp master key";
const LABEL_MASTER_SALT: &[u8] = b"blindfold/v1 srtp master salt";

/// Timing of the schedule; all durations in milliseconds of the caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Interval between one-way ratchet steps.
    pub epoch_interval_ms: u64,
    /// After a leave, how long a fresh generation is distributed before it is used.
    pub rekey_activation_ms: u64,
    /// How long a superseded epoch's secret is kept for reordered packets.
    pub grace_ms: u64,
    /// How much later than the key generator other members step on their own timer.
    pub follower_slack_ms: u64,
    /// How many steps ahead of its newest secret a receiver derives locally.
    pub max_forward_steps: u16,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            epoch_interval_ms: 30_000,
            rekey_activation_ms: 500,
            grace_ms: 2_000,
            follower_slack_ms: 1_000,
            max_forward_steps: 16,
        }
    }
}

/// A member as signalling announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: ParticipantId,
    /// Join order assigned by signalling; lower is longer present.
    pub joined_at: u64,
    /// The member's key-transport public key (an X25519 key for [`super::HpkeTransport`]).
    pub transport_key: Vec<u8>,
}

/// An event for the schedule.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    MemberJoined(Member),
    MemberLeft(ParticipantId),
    /// A key message signalling delivered, with the sender it names.
    KeyMessage {
        from: ParticipantId,
        message: &'a [u8],
    },
}

/// Work for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Deliver this sealed key message to `to` through signalling.
    SendKeyMessage { to: ParticipantId, message: Vec<u8> },
    /// From now on, protect outgoing media under this epoch.
    SendingEpoch(EpochId),
    /// A secret for this epoch is held (receive keys can be derived).
    EpochInstalled(EpochId),
    /// This epoch's secret was erased.
    EpochErased(EpochId),
}

/// Why an input was refused. The schedule's state is unchanged by a refused key message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("key message from {0}, who is not a member")]
    UnknownSender(ParticipantId),
    #[error("participant {0} is already a member")]
    DuplicateMember(ParticipantId),
    #[error("epoch {0} is already held under a different secret")]
    EpochConflict(EpochId),
    #[error("key for epoch {0} is older than the newest held")]
    StaleKey(EpochId),
    #[error("key message does not carry an epoch secret")]
    WrongPurpose,
    #[error("epoch secret has the wrong length")]
    BadSecretLength,
    #[error("generation space exhausted: start a new call secret")]
    EpochSpaceExhausted,
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct EpochSecret([u8; SECRET_LEN]);

impl EpochSecret {
    fn ratchet(&self, to: EpochId) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(RATCHET_SALT), &self.0);
        let mut next = [0u8; SECRET_LEN];
        // 32 octets is far below HKDF-SHA256's 8160-octet limit.
        hk.expand(&to.to_bytes(), &mut next)
            .expect("32 octets is a valid HKDF length");
        Self(next)
    }
}

/// A sender's SRTP master key and salt for one epoch.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SenderMaster {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl SenderMaster {
    fn derive(secret: &EpochSecret, epoch: EpochId, sender: &ParticipantId) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(SRTP_SALT), &secret.0);
        let mut out = Self {
            key: [0; MASTER_KEY_LEN],
            salt: [0; MASTER_SALT_LEN],
        };
        let epoch = epoch.to_bytes();
        // Fixed-length fields after distinct labels: the two infos can never coincide.
        hk.expand_multi_info(&[LABEL_MASTER_KEY, &epoch, sender.as_bytes()], &mut out.key)
            .expect("16 octets is a valid HKDF length");
        hk.expand_multi_info(
            &[LABEL_MASTER_SALT, &epoch, sender.as_bytes()],
            &mut out.salt,
        )
        .expect("12 octets is a valid HKDF length");
        out
    }

    pub fn key(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.key
    }

    pub fn salt(&self) -> &[u8; MASTER_SALT_LEN] {
        &self.salt
    }
}

impl fmt::Debug for SenderMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SenderMaster(..)")
    }
}

struct Entry {
    secret: EpochSecret,
    expires_at: Option<u64>,
}

/// One participant's view of the group key schedule.
pub struct KeySchedule<T: KeyTransport> {
    config: ScheduleConfig,
    me: ParticipantId,
    my_joined_at: u64,
    members: BTreeMap<ParticipantId, u64>,
    transport: T,
    rng: BoxRng,
    epochs: BTreeMap<EpochId, Entry>,
    current: Option<EpochId>,
    pending: Option<(EpochId, u64)>,
    step_base: u64,
    highest_generation: Option<u16>,
    outputs: VecDeque<Output>,
}

impl<T: KeyTransport> KeySchedule<T> {
    /// Starts the schedule for `me`, entering a call whose other members are `roster`.
    /// With an empty roster this participant is alone, becomes the key generator and starts
    /// a generation; otherwise it waits for a key message.
    pub fn new(
        config: ScheduleConfig,
        me: &Member,
        roster: Vec<Member>,
        transport: T,
        rng: BoxRng,
        now_ms: u64,
    ) -> Result<Self, ScheduleError> {
        let mut schedule = Self {
            config,
            me: me.id,
            my_joined_at: me.joined_at,
            members: BTreeMap::new(),
            transport,
            rng,
            epochs: BTreeMap::new(),
            current: None,
            pending: None,
            step_base: now_ms,
            highest_generation: None,
            outputs: VecDeque::new(),
        };
        for member in roster {
            if member.id == me.id {
                continue;
            }
            schedule
                .transport
                .add_peer(member.id, &member.transport_key)?;
            schedule.members.insert(member.id, member.joined_at);
        }
        schedule.ensure_keys(now_ms)?;
        Ok(schedule)
    }

    pub fn me(&self) -> ParticipantId {
        self.me
    }

    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// Other current members.
    pub fn members(&self) -> impl Iterator<Item = &ParticipantId> {
        self.members.keys()
    }

    pub fn is_member(&self, id: &ParticipantId) -> bool {
        *id == self.me || self.members.contains_key(id)
    }

    /// The member that draws fresh secrets: lowest `(joined_at, id)`.
    pub fn key_generator(&self) -> ParticipantId {
        self.members
            .iter()
            .map(|(id, at)| (*at, *id))
            .chain(std::iter::once((self.my_joined_at, self.me)))
            .min()
            .map(|(_, id)| id)
            .unwrap_or(self.me)
    }

    pub fn is_key_generator(&self) -> bool {
        self.key_generator() == self.me
    }

    /// The epoch to protect outgoing media under, once one is held.
    pub fn sending_epoch(&self) -> Option<EpochId> {
        self.current
    }

    /// A fresh generation that is distributed but not yet used for sending.
    pub fn pending_epoch(&self) -> Option<EpochId> {
        self.pending.map(|(e, _)| e)
    }

    /// Epochs whose secrets are held.
    pub fn held_epochs(&self) -> impl Iterator<Item = EpochId> + '_ {
        self.epochs.keys().copied()
    }

    pub fn holds(&self, epoch: EpochId) -> bool {
        self.epochs.contains_key(&epoch)
    }

    /// Master key and salt of `sender` in a held epoch (for SRTP and the key log).
    pub fn master_keys(&self, sender: &ParticipantId, epoch: EpochId) -> Option<SenderMaster> {
        self.epochs
            .get(&epoch)
            .map(|e| SenderMaster::derive(&e.secret, epoch, sender))
    }

    /// Master keys for receiving `sender`'s packet under `epoch`: from a held secret, or
    /// derived up to `max_forward_steps` ahead within a held generation. Nothing is
    /// installed: call [`KeySchedule::observe`] once a packet authenticated.
    pub fn receive_master(&self, sender: &ParticipantId, epoch: EpochId) -> Option<SenderMaster> {
        self.secret_for(epoch)
            .map(|secret| SenderMaster::derive(&secret, epoch, sender))
    }

    fn secret_for(&self, epoch: EpochId) -> Option<EpochSecret> {
        if let Some(entry) = self.epochs.get(&epoch) {
            return Some(entry.secret.clone());
        }
        let lowest = EpochId::new(epoch.generation(), 0);
        let (base, entry) = self.epochs.range(lowest..epoch).next_back()?;
        if epoch.step() - base.step() > self.config.max_forward_steps {
            return None;
        }
        let mut secret = entry.secret.clone();
        let mut at = *base;
        while at != epoch {
            at = at.next_step()?;
            secret = secret.ratchet(at);
        }
        Some(secret)
    }

    /// Next output for the caller.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`KeySchedule::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let step = match (self.current, self.pending) {
            (Some(_), None) => Some(self.step_due()),
            _ => None,
        };
        let activation = self.pending.map(|(_, at)| at);
        let expiry = self.epochs.values().filter_map(|e| e.expires_at).min();
        [step, activation, expiry].into_iter().flatten().min()
    }

    fn step_due(&self) -> u64 {
        let slack = if self.is_key_generator() {
            0
        } else {
            self.config.follower_slack_ms
        };
        self.step_base
            .saturating_add(self.config.epoch_interval_ms)
            .saturating_add(slack)
    }

    /// Advances timers: activates a pending generation, ratchets, erases expired secrets.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), ScheduleError> {
        if let Some((epoch, at)) = self.pending
            && now_ms >= at
        {
            self.switch_to(epoch, now_ms);
        }
        if self.current.is_some() && self.pending.is_none() && now_ms >= self.step_due() {
            self.step(now_ms)?;
        }
        let expired: Vec<EpochId> = self
            .epochs
            .iter()
            .filter(|(_, e)| e.expires_at.is_some_and(|t| t <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        for epoch in expired {
            // Dropping the entry zeroizes the secret.
            self.epochs.remove(&epoch);
            self.outputs.push_back(Output::EpochErased(epoch));
        }
        Ok(())
    }

    /// Handles a membership event or a key message.
    pub fn handle_input(&mut self, input: Input<'_>, now_ms: u64) -> Result<(), ScheduleError> {
        match input {
            Input::MemberJoined(member) => self.member_joined(member, now_ms),
            Input::MemberLeft(id) => self.member_left(id, now_ms),
            Input::KeyMessage { from, message } => self.key_message(from, message, now_ms),
        }
    }

    /// Tells the schedule a packet authenticated under `epoch`: if another member is
    /// already using a later step or the pending generation, follow it now.
    pub fn observe(&mut self, epoch: EpochId, now_ms: u64) {
        let Some(current) = self.current else {
            return;
        };
        if let Some((pending, _)) = self.pending
            && epoch.generation() == pending.generation()
            && epoch.step() >= pending.step()
        {
            if let Some(secret) = self.secret_for(epoch) {
                self.install(epoch, secret);
                self.switch_to(epoch, now_ms);
            }
            return;
        }
        if epoch.generation() == current.generation()
            && epoch.step() > current.step()
            && let Some(secret) = self.secret_for(epoch)
        {
            self.install(epoch, secret);
            self.switch_to(epoch, now_ms);
        }
    }

    fn member_joined(&mut self, member: Member, now_ms: u64) -> Result<(), ScheduleError> {
        if member.id == self.me {
            return Ok(());
        }
        if self.members.contains_key(&member.id) {
            return Err(ScheduleError::DuplicateMember(member.id));
        }
        self.transport.add_peer(member.id, &member.transport_key)?;
        self.members.insert(member.id, member.joined_at);
        if self.current.is_none() {
            return self.ensure_keys(now_ms);
        }
        // Everyone ratchets, so the joiner's first secret is one nobody has used yet.
        self.step(now_ms)?;
        let repending = self.step_pending(now_ms);
        if !self.is_key_generator() {
            return Ok(());
        }
        let newest = self.pending.map(|(e, _)| e).or(self.current);
        let Some(newest) = newest else {
            return Ok(());
        };
        if repending {
            // Members may have opened the pre-join step of the pending generation after
            // handling the join; resend the stepped one so nobody activates a step the
            // joiner lacks.
            let all: Vec<ParticipantId> = self.members.keys().copied().collect();
            self.seal_to(&all, newest)
        } else {
            self.seal_to(&[member.id], newest)
        }
    }

    fn member_left(&mut self, id: ParticipantId, now_ms: u64) -> Result<(), ScheduleError> {
        if id == self.me || !self.members.contains_key(&id) {
            return Ok(());
        }
        let generator_before = self.key_generator();
        self.members.remove(&id);
        self.transport.remove_peer(&id);
        if !self.is_key_generator() {
            return Ok(());
        }
        if self.current.is_none() && self.pending.is_none() {
            return self.ensure_keys(now_ms);
        }
        self.fresh_generation(now_ms, generator_before != self.me, false)
    }

    fn key_message(
        &mut self,
        from: ParticipantId,
        message: &[u8],
        now_ms: u64,
    ) -> Result<(), ScheduleError> {
        if !self.members.contains_key(&from) {
            return Err(ScheduleError::UnknownSender(from));
        }
        let (header, plaintext) = open_key_message(&mut self.transport, &self.me, &from, message)?;
        if header.purpose != KeyPurpose::EpochSecret {
            return Err(ScheduleError::WrongPurpose);
        }
        let bytes: [u8; SECRET_LEN] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| ScheduleError::BadSecretLength)?;
        let secret = EpochSecret(bytes);
        let epoch = header.epoch;
        if let Some(held) = self.epochs.get(&epoch) {
            return if bool::from(held.secret.0.ct_eq(&secret.0)) {
                Ok(())
            } else {
                Err(ScheduleError::EpochConflict(epoch))
            };
        }
        let Some(current) = self.current else {
            // A joiner's first key (or a handover key while it had none): use it at once.
            self.install(epoch, secret);
            self.pending = None;
            self.switch_to(epoch, now_ms);
            return Ok(());
        };
        let newest = self.pending.map(|(e, _)| e).unwrap_or(current);
        if epoch.generation() == newest.generation() {
            if epoch.step() <= newest.step() {
                return Err(ScheduleError::StaleKey(epoch));
            }
            self.install(epoch, secret);
            match self.pending {
                Some((old, at)) => {
                    self.expire(old, now_ms);
                    self.pending = Some((epoch, at));
                }
                None => self.switch_to(epoch, now_ms),
            }
            return Ok(());
        }
        if epoch.generation() < newest.generation() {
            return Err(ScheduleError::StaleKey(epoch));
        }
        self.install(epoch, secret);
        if let Some((old, _)) = self.pending {
            self.expire(old, now_ms);
        }
        self.pending = Some((
            epoch,
            now_ms.saturating_add(self.config.rekey_activation_ms),
        ));
        Ok(())
    }

    fn ensure_keys(&mut self, now_ms: u64) -> Result<(), ScheduleError> {
        if self.is_key_generator() && self.current.is_none() && self.pending.is_none() {
            self.fresh_generation(now_ms, true, true)?;
        }
        Ok(())
    }

    /// Draws a fresh secret in a new generation and seals it to every other member.
    fn fresh_generation(
        &mut self,
        now_ms: u64,
        handover: bool,
        immediate: bool,
    ) -> Result<(), ScheduleError> {
        let generation = match self.highest_generation {
            None => (self.rng.next_u32() & 0x3fff) as u16,
            Some(high) => high
                .checked_add(if handover { HANDOVER_SKIP } else { 1 })
                .ok_or(ScheduleError::EpochSpaceExhausted)?,
        };
        let epoch = EpochId::new(generation, 0);
        let mut secret = EpochSecret([0; SECRET_LEN]);
        self.rng.fill_bytes(&mut secret.0);
        self.install(epoch, secret);
        if let Some((old, _)) = self.pending {
            self.expire(old, now_ms);
        }
        if immediate || self.current.is_none() {
            self.pending = None;
            self.switch_to(epoch, now_ms);
        } else {
            self.pending = Some((
                epoch,
                now_ms.saturating_add(self.config.rekey_activation_ms),
            ));
        }
        let all: Vec<ParticipantId> = self.members.keys().copied().collect();
        self.seal_to(&all, epoch)
    }

    fn seal_to(
        &mut self,
        recipients: &[ParticipantId],
        epoch: EpochId,
    ) -> Result<(), ScheduleError> {
        let Some(entry) = self.epochs.get(&epoch) else {
            return Ok(());
        };
        let secret = entry.secret.clone();
        let mut first_error = None;
        for to in recipients {
            let header = KeyMessageHeader {
                purpose: KeyPurpose::EpochSecret,
                sender: self.me,
                recipient: *to,
                epoch,
            };
            // One bad recipient key must not keep the others from their key.
            match seal_key_message(&mut self.transport, &header, &secret.0) {
                Ok(message) => self
                    .outputs
                    .push_back(Output::SendKeyMessage { to: *to, message }),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Ratchets the sending epoch one step (or rekeys when the step counter is spent).
    fn step(&mut self, now_ms: u64) -> Result<(), ScheduleError> {
        let Some(current) = self.current else {
            return Ok(());
        };
        let Some(next) = current.next_step() else {
            if self.is_key_generator() && self.pending.is_none() {
                return self.fresh_generation(now_ms, false, false);
            }
            self.step_base = now_ms;
            return Ok(());
        };
        if !self.epochs.contains_key(&next)
            && let Some(secret) = self.secret_for(next)
        {
            self.install(next, secret);
        }
        if self.epochs.contains_key(&next) {
            self.switch_to(next, now_ms);
        }
        Ok(())
    }

    /// Ratchets a pending generation one step; true if there was one.
    fn step_pending(&mut self, now_ms: u64) -> bool {
        let Some((pending, at)) = self.pending else {
            return false;
        };
        let Some(next) = pending.next_step() else {
            return false;
        };
        let Some(secret) = self.secret_for(next) else {
            return false;
        };
        self.install(next, secret);
        self.expire(pending, now_ms);
        self.pending = Some((next, at));
        true
    }

    fn install(&mut self, epoch: EpochId, secret: EpochSecret) {
        if self.epochs.contains_key(&epoch) {
            return;
        }
        self.epochs.insert(
            epoch,
            Entry {
                secret,
                expires_at: None,
            },
        );
        self.highest_generation = Some(
            self.highest_generation
                .map_or(epoch.generation(), |h| h.max(epoch.generation())),
        );
        self.outputs.push_back(Output::EpochInstalled(epoch));
    }

    fn expire(&mut self, epoch: EpochId, now_ms: u64) {
        let deadline = now_ms.saturating_add(self.config.grace_ms);
        if let Some(entry) = self.epochs.get_mut(&epoch) {
            entry.expires_at = Some(entry.expires_at.map_or(deadline, |t| t.min(deadline)));
        }
    }

    fn switch_to(&mut self, epoch: EpochId, now_ms: u64) {
        if self.pending.is_some_and(|(p, _)| p == epoch) {
            self.pending = None;
        }
        if self.current == Some(epoch) {
            return;
        }
        let keep = self.pending.map(|(p, _)| p);
        let older: Vec<EpochId> = self
            .epochs
            .keys()
            .copied()
            .filter(|e| *e != epoch && Some(*e) != keep)
            .collect();
        for old in older {
            self.expire(old, now_ms);
        }
        self.current = Some(epoch);
        self.step_base = now_ms;
        self.outputs.push_back(Output::SendingEpoch(epoch));
    }
}

impl<T: KeyTransport> fmt::Debug for KeySchedule<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySchedule")
            .field("me", &self.me)
            .field("current", &self.current)
            .field("pending", &self.pending)
            .field("held", &self.epochs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
