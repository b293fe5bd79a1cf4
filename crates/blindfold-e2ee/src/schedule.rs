//! The media key schedule, sans-IO: MLS epoch secrets and the time go in; the epoch to
//! send under, the keys to receive with, and what was erased come out. No clock, socket or
//! membership here: membership is the MLS group's ([`super::group`]), and who commits and
//! when is [`super::session`]'s.
//!
//! Owns: which epoch secret is in force for sending, which are held for receiving and for
//! how long, the one-way ratchet within an MLS epoch, and the derivation of per-sender SRTP
//! master keys from an epoch secret. Must not touch: packet formats ([`super::srtp`]), MLS.
//!
//! # The design
//! - **Epoch ids** are `generation(16) | step(16)` (the SRTP MKI). The generation is the MLS
//!   epoch number (a call ends its key space after 65,535 commits: the session then stops
//!   sending). Step 0's secret is the MLS exporter secret of that epoch
//!   ([`super::group::MEDIA_EXPORTER_LABEL`]); each further step is
//!   `HKDF(secret, "ratchet", next epoch id)`, one-way, so holding step `s` yields `s+k`
//!   but never `s-1`.
//! - **Timer**: every `epoch_interval_ms` (30 s) after a member started sending under a
//!   generation it ratchets one step, with no message. Members that merged the epoch a few
//!   milliseconds apart step a few milliseconds apart; a receiver derives up to
//!   `max_forward_steps` ahead and, once a packet under a later step authenticated, adopts it.
//! - **Activation**: a new generation is used for sending `activation_ms` after it was
//!   installed (so members still processing the commit do not miss packets), earlier if a
//!   packet under it authenticated, and never later than the caller's deadline (the
//!   fail-closed rule after a leave).
//! - **Grace**: when the sending epoch changes, every older secret is kept `grace_ms` (2 s)
//!   for reordered packets, then erased (zeroized) with keys derived from it.
//!
//! # Per-sender keys and why no two senders share a (key, nonce)
//! Each sender's SRTP master key and salt are
//! `HKDF-SHA256(epoch secret, label, epoch id || sender id)` with distinct labels for key
//! and salt. The AES-GCM nonce is `salt XOR (SSRC, ROC, SEQ)` under the session key derived
//! from that master key. Two members have distinct ephemeral ids (the group refuses a
//! duplicate), so their HKDF inputs differ and their master keys are independent
//! pseudo-random values: even with equal SSRCs and sequence numbers they encrypt under
//! different keys. Within one sender, distinct SSRCs give distinct nonces, and
//! [`super::srtp::SrtpSender`] refuses to reuse an index; each epoch has its own key.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::frames::SframeBaseKey;
use super::ids::ParticipantId;
use super::srtp::{EpochId, MASTER_KEY_LEN, MASTER_SALT_LEN};

/// Length of an epoch secret.
pub const SECRET_LEN: usize = 32;

const RATCHET_SALT: &[u8] = b"blindfold/v1 epoch ratchet";
const SRTP_SALT: &[u8] = b"blindfold/v1 srtp";
const LABEL_MASTER_KEY: &[u8] = b"blindfold/v1 srtp master key";
const LABEL_MASTER_SALT: &[u8] = b"blindfold/v1 srtp master salt";

/// Timing of the schedule and of the group around it; all durations in milliseconds of the
/// caller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Interval between one-way ratchet steps within an MLS epoch.
    pub epoch_interval_ms: u64,
    /// How long after merging a new MLS epoch a member starts sending under it.
    pub activation_ms: u64,
    /// How long a superseded epoch's secret is kept for reordered packets.
    pub grace_ms: u64,
    /// How many steps ahead of its newest secret a receiver derives locally.
    pub max_forward_steps: u16,
    /// Fail closed: after seeing a leave, how long a member waits for an epoch without the
    /// leaver before it stops sending.
    pub leave_deadline_ms: u64,
    /// The lowest active leaf commits at once; the member of rank `r` (by leaf index)
    /// commits `r` times this long after the work appeared, if nobody did.
    pub commit_backoff_ms: u64,
    /// A commit of ours the delivery service has not echoed back in this time is made anew.
    pub commit_retry_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            epoch_interval_ms: 30_000,
            activation_ms: 250,
            grace_ms: 2_000,
            max_forward_steps: 16,
            leave_deadline_ms: 1_500,
            commit_backoff_ms: 300,
            commit_retry_ms: 1_000,
        }
    }
}

/// What the schedule changed, for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// From now on, protect outgoing media under this epoch.
    SendingEpoch(EpochId),
    /// A secret for this epoch is held (receive keys can be derived).
    EpochInstalled(EpochId),
    /// This epoch's secret was erased.
    EpochErased(EpochId),
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

/// One participant's media keys for one call.
pub struct KeySchedule {
    config: ScheduleConfig,
    epochs: BTreeMap<EpochId, Entry>,
    current: Option<EpochId>,
    /// A newer generation and when to start sending under it.
    pending: Option<(EpochId, u64)>,
    step_base: u64,
    events: VecDeque<KeyEvent>,
}

impl KeySchedule {
    pub fn new(config: ScheduleConfig) -> Self {
        Self {
            config,
            epochs: BTreeMap::new(),
            current: None,
            pending: None,
            step_base: 0,
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// Installs step 0 of `generation` from an MLS epoch's exporter secret; sending moves to
    /// it at `activate_at` (at once if nothing is sent yet or the time has come).
    pub fn install_generation(
        &mut self,
        generation: u16,
        secret: &[u8; SECRET_LEN],
        now_ms: u64,
        activate_at: u64,
    ) {
        let epoch = EpochId::new(generation, 0);
        self.install(epoch, EpochSecret(*secret));
        if let Some((old, _)) = self.pending.take() {
            self.expire(old, now_ms);
        }
        if self.current.is_none() || activate_at <= now_ms {
            self.switch_to(epoch, now_ms);
        } else {
            self.pending = Some((epoch, activate_at));
        }
    }

    /// Moves sending to the pending generation now (the fail-closed deadline came first).
    pub fn activate_pending(&mut self, now_ms: u64) {
        if let Some((epoch, _)) = self.pending {
            self.switch_to(epoch, now_ms);
        }
    }

    /// Erases every secret (the member left or was removed).
    pub fn clear(&mut self) {
        let all: Vec<EpochId> = self.epochs.keys().copied().collect();
        // Dropping the entries zeroizes the secrets.
        self.epochs.clear();
        self.current = None;
        self.pending = None;
        for epoch in all {
            self.events.push_back(KeyEvent::EpochErased(epoch));
        }
    }

    /// The epoch to protect outgoing media under, once one is held.
    pub fn sending_epoch(&self) -> Option<EpochId> {
        self.current
    }

    /// A newer generation that is held but not yet used for sending.
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

    /// SFrame base key of the sender at MLS leaf `leaf` under `epoch` (held, or derived
    /// up to `max_forward_steps` ahead like [`KeySchedule::receive_master`]): the same
    /// epoch secret and ratchet as SRTP, under SFrame's own label ([`crate::frames`]).
    pub fn sframe_base_key(&self, epoch: EpochId, leaf: u32) -> Option<SframeBaseKey> {
        self.secret_for(epoch)
            .map(|secret| SframeBaseKey::derive(&secret.0, epoch, leaf))
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

    /// Next event for the caller.
    pub fn poll_event(&mut self) -> Option<KeyEvent> {
        self.events.pop_front()
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
        self.step_base.saturating_add(self.config.epoch_interval_ms)
    }

    /// Advances timers: activates a pending generation, ratchets, erases expired secrets.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Some((epoch, at)) = self.pending
            && now_ms >= at
        {
            self.switch_to(epoch, now_ms);
        }
        if self.current.is_some() && self.pending.is_none() && now_ms >= self.step_due() {
            self.step(now_ms);
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
            self.events.push_back(KeyEvent::EpochErased(epoch));
        }
    }

    /// Tells the schedule a packet authenticated under `epoch`: if another member already
    /// uses the pending generation or a later step, follow it now.
    pub fn observe(&mut self, epoch: EpochId, now_ms: u64) {
        let Some(current) = self.current else {
            return;
        };
        let target = match self.pending {
            Some((pending, _))
                if epoch.generation() == pending.generation() && epoch.step() >= pending.step() =>
            {
                epoch
            }
            _ if epoch.generation() == current.generation() && epoch.step() > current.step() => {
                epoch
            }
            _ => return,
        };
        if let Some(secret) = self.secret_for(target) {
            self.install(target, secret);
            self.switch_to(target, now_ms);
        }
    }

    /// Ratchets the sending epoch one step. A spent step counter keeps the last step (the
    /// next MLS epoch brings a new generation long before 65,535 steps of 30 s).
    fn step(&mut self, now_ms: u64) {
        let Some(current) = self.current else {
            return;
        };
        let Some(next) = current.next_step() else {
            self.step_base = now_ms;
            return;
        };
        if !self.epochs.contains_key(&next)
            && let Some(secret) = self.secret_for(next)
        {
            self.install(next, secret);
        }
        if self.epochs.contains_key(&next) {
            self.switch_to(next, now_ms);
        }
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
        self.events.push_back(KeyEvent::EpochInstalled(epoch));
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
        self.events.push_back(KeyEvent::SendingEpoch(epoch));
    }
}

impl fmt::Debug for KeySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySchedule")
            .field("current", &self.current)
            .field("pending", &self.pending)
            .field("held", &self.epochs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ParticipantId {
        ParticipantId::from_bytes([n; 16])
    }

    #[test]
    fn steps_are_one_way_and_old_secrets_expire_after_grace() {
        let mut s = KeySchedule::new(ScheduleConfig::default());
        s.install_generation(7, &[1; 32], 0, 0);
        assert_eq!(s.sending_epoch(), Some(EpochId::new(7, 0)));
        s.handle_timeout(30_000);
        assert_eq!(s.sending_epoch(), Some(EpochId::new(7, 1)));
        assert!(s.holds(EpochId::new(7, 0)));
        s.handle_timeout(32_000);
        assert!(!s.holds(EpochId::new(7, 0)), "erased after grace");
        // Holding step 1 derives step 3 but never step 0.
        assert!(s.receive_master(&id(1), EpochId::new(7, 3)).is_some());
        assert!(s.receive_master(&id(1), EpochId::new(7, 0)).is_none());
    }

    #[test]
    fn sframe_keys_follow_the_same_epochs_and_ratchet_as_srtp() {
        use crate::frames::{SframeSender, sframe_kid, sframe_open};
        let mut s = KeySchedule::new(ScheduleConfig::default());
        s.install_generation(4, &[3; 32], 0, 0);
        s.handle_timeout(30_000);
        let now = EpochId::new(4, 1);
        let base = s.sframe_base_key(now, 2).unwrap();
        let kid = sframe_kid(now, 2).unwrap();
        let frame = SframeSender::new(&base, kid)
            .unwrap()
            .protect(b"f")
            .unwrap();
        // A member that holds only step 0 derives step 1 forward and opens it.
        let mut other = KeySchedule::new(ScheduleConfig::default());
        other.install_generation(4, &[3; 32], 0, 0);
        let theirs = other.sframe_base_key(now, 2).unwrap();
        assert_eq!(sframe_open(&theirs, kid, &frame).unwrap(), b"f");
        // After grace step 0 is gone, and nothing derives backwards to it.
        s.handle_timeout(32_000);
        assert!(s.sframe_base_key(EpochId::new(4, 0), 2).is_none());
        // Another generation's secret (a different MLS epoch) does not open it.
        let mut stranger = KeySchedule::new(ScheduleConfig::default());
        stranger.install_generation(4, &[4; 32], 0, 0);
        let wrong = stranger.sframe_base_key(now, 2).unwrap();
        assert!(sframe_open(&wrong, kid, &frame).is_err());
    }

    #[test]
    fn a_new_generation_waits_for_activation_or_a_packet_under_it() {
        let mut s = KeySchedule::new(ScheduleConfig::default());
        s.install_generation(1, &[1; 32], 0, 0);
        s.install_generation(2, &[2; 32], 100, 350);
        assert_eq!(s.sending_epoch(), Some(EpochId::new(1, 0)));
        assert_eq!(s.poll_timeout(), Some(350));
        s.observe(EpochId::new(2, 0), 200);
        assert_eq!(s.sending_epoch(), Some(EpochId::new(2, 0)));
        // A generation nobody installed is never adopted, whatever a packet claims.
        s.observe(EpochId::new(0xffff, 0), 300);
        assert_eq!(s.sending_epoch(), Some(EpochId::new(2, 0)));
        s.clear();
        assert_eq!(s.sending_epoch(), None);
        assert_eq!(s.held_epochs().count(), 0);
    }
}
