//! A participant's media crypto for one call: the key schedule plus SRTP state.
//!
//! Owns: the SRTP sender state for this participant's streams, one receiver per remote
//! participant, and a cache of derived per-(sender, epoch) SRTP keys that is pruned
//! whenever the schedule erases an epoch.
//!
//! Must not touch: sockets, clocks or signalling; the schedule's decisions.

use std::collections::HashMap;

use thiserror::Error;

use super::ids::ParticipantId;
use super::schedule::{Input, KeySchedule, Output, ScheduleError};
use super::seal::KeyTransport;
use super::srtp::{
    DEFAULT_ROC_SEARCH, EpochId, OpenedRtcp, RTCP_OVERHEAD, RTP_OVERHEAD, SrtpError, SrtpKeys,
    SrtpReceiver, SrtpSender, keylog_line, read_mki,
};

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum E2eeError {
    #[error(transparent)]
    Srtp(#[from] SrtpError),
    #[error("no sending key yet (waiting for a key message)")]
    NoSendingKey,
    #[error("participant {0} is not a member of this call")]
    UnknownParticipant(ParticipantId),
}

/// The participant-side E2EE state of one call. Sans-IO like the schedule it wraps.
pub struct E2eeSession<T: KeyTransport> {
    schedule: KeySchedule<T>,
    sender: SrtpSender,
    send_keys: Option<SrtpKeys>,
    receivers: HashMap<ParticipantId, SrtpReceiver>,
    recv_keys: HashMap<(ParticipantId, EpochId), SrtpKeys>,
    roc_search: u32,
}

impl<T: KeyTransport> E2eeSession<T> {
    pub fn new(schedule: KeySchedule<T>) -> Self {
        let mut session = Self {
            schedule,
            sender: SrtpSender::new(),
            send_keys: None,
            receivers: HashMap::new(),
            recv_keys: HashMap::new(),
            roc_search: DEFAULT_ROC_SEARCH,
        };
        session.sync();
        session
    }

    /// How many rollover counters to try on a late-joined stream's first packet.
    pub fn set_roc_search(&mut self, roc_search: u32) {
        self.roc_search = roc_search;
    }

    pub fn schedule(&self) -> &KeySchedule<T> {
        &self.schedule
    }

    pub fn me(&self) -> ParticipantId {
        self.schedule.me()
    }

    pub fn sending_epoch(&self) -> Option<EpochId> {
        self.schedule.sending_epoch()
    }

    pub fn handle_input(&mut self, input: Input<'_>, now_ms: u64) -> Result<(), ScheduleError> {
        if let Input::MemberLeft(id) = &input {
            self.receivers.remove(id);
        }
        let result = self.schedule.handle_input(input, now_ms);
        self.sync();
        result
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), ScheduleError> {
        let result = self.schedule.handle_timeout(now_ms);
        self.sync();
        result
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.schedule.poll_timeout()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.schedule.poll_output()
    }

    /// Drops keys of erased epochs and of departed members; rebuilds the sending keys when
    /// the sending epoch changed.
    fn sync(&mut self) {
        let schedule = &self.schedule;
        self.recv_keys
            .retain(|(from, epoch), _| schedule.holds(*epoch) && schedule.is_member(from));
        self.receivers.retain(|from, _| schedule.is_member(from));
        let epoch = schedule.sending_epoch();
        if self.send_keys.as_ref().and_then(SrtpKeys::mki) != epoch {
            self.send_keys = epoch.and_then(|e| {
                schedule
                    .master_keys(&schedule.me(), e)
                    .map(|m| SrtpKeys::derive(m.key(), m.salt(), Some(e)))
            });
        }
    }

    fn send_keys(&self) -> Result<&SrtpKeys, E2eeError> {
        self.send_keys.as_ref().ok_or(E2eeError::NoSendingKey)
    }

    /// Protects the RTP packet in `buf[..len]` in place under the sending epoch; `buf`
    /// needs [`RTP_OVERHEAD`] spare octets. Returns the SRTP length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, E2eeError> {
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

    /// Keys for `from`'s packet under the epoch its MKI names, derived and cached on demand.
    fn receive_keys(&mut self, from: &ParticipantId, epoch: EpochId) -> Result<(), E2eeError> {
        if self.recv_keys.contains_key(&(*from, epoch)) {
            return Ok(());
        }
        let master = self
            .schedule
            .receive_master(from, epoch)
            .ok_or(SrtpError::UnknownEpoch(epoch))?;
        self.recv_keys.insert(
            (*from, epoch),
            SrtpKeys::derive(master.key(), master.salt(), Some(epoch)),
        );
        Ok(())
    }

    fn check_member(&self, from: &ParticipantId) -> Result<(), E2eeError> {
        if *from == self.schedule.me() || !self.schedule.is_member(from) {
            return Err(E2eeError::UnknownParticipant(*from));
        }
        Ok(())
    }

    /// After a packet authenticated: follow the sender to a later epoch if it is ahead, and
    /// drop a key derived for an epoch the schedule does not hold.
    fn after_receive(&mut self, epoch: EpochId, now_ms: u64) {
        self.schedule.observe(epoch, now_ms);
        self.sync();
    }

    /// Verifies and decrypts an SRTP packet from `from` filling `buf`; returns the RTP
    /// packet's length at the start of `buf`. The SSRC → participant mapping comes from
    /// signalling.
    pub fn unprotect_rtp(
        &mut self,
        from: &ParticipantId,
        buf: &mut [u8],
        now_ms: u64,
    ) -> Result<usize, E2eeError> {
        self.check_member(from)?;
        let epoch = read_mki(buf)?;
        self.receive_keys(from, epoch)?;
        let Self {
            receivers,
            recv_keys,
            roc_search,
            ..
        } = self;
        let keys = &recv_keys[&(*from, epoch)];
        let receiver = receivers
            .entry(*from)
            .or_insert_with(|| SrtpReceiver::with_roc_search(*roc_search));
        let result = receiver.unprotect_rtp(keys, buf);
        if result.is_ok() {
            self.after_receive(epoch, now_ms);
        } else if !self.schedule.holds(epoch) {
            // A forward-derived key that did not verify is not kept.
            self.recv_keys.remove(&(*from, epoch));
        }
        Ok(result?)
    }

    /// Verifies (and decrypts if E=1) an SRTCP packet from `from` filling `buf`.
    pub fn unprotect_rtcp(
        &mut self,
        from: &ParticipantId,
        buf: &mut [u8],
        now_ms: u64,
    ) -> Result<OpenedRtcp, E2eeError> {
        self.check_member(from)?;
        let epoch = read_mki(buf)?;
        self.receive_keys(from, epoch)?;
        let Self {
            receivers,
            recv_keys,
            roc_search,
            ..
        } = self;
        let keys = &recv_keys[&(*from, epoch)];
        let receiver = receivers
            .entry(*from)
            .or_insert_with(|| SrtpReceiver::with_roc_search(*roc_search));
        let result = receiver.unprotect_rtcp(keys, buf);
        if result.is_ok() {
            self.after_receive(epoch, now_ms);
        } else if !self.schedule.holds(epoch) {
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
        self.keylog_line_for(&self.schedule.me(), ssrc, self.schedule.sending_epoch()?)
    }

    /// The `--key-log` line for any sender's SSRC in a held epoch.
    pub fn keylog_line_for(
        &self,
        sender: &ParticipantId,
        ssrc: u32,
        epoch: EpochId,
    ) -> Option<String> {
        let master = self.schedule.master_keys(sender, epoch)?;
        Some(keylog_line(ssrc, epoch, master.key(), master.salt()))
    }

    /// Whether a sending key is available.
    pub fn can_send(&self) -> bool {
        self.send_keys().is_ok()
    }
}
