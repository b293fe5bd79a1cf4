//! A whole call of [`E2eeSession`]s around an in-memory delivery service, on a simulated
//! clock: the harness of the group tests (with a hostile service that drops, delays,
//! reorders, replays or forks) and of `blindfold group-cost`.
//!
//! Owns: the simulated time, the service's relay and ordering rule (the same as the real
//! signalling service's: first Commit for the next epoch wins, broadcast to all, Welcome to
//! the joiners), a log of everything relayed (for replays), and media between members.
//! Must not touch: the sessions' insides (only their public inputs and outputs), sockets,
//! the wall clock (except [`SimCall::cpu`], which times what the sessions cost).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ContentType, MlsMessageIn};

use super::ids::{CallSecret, ParticipantId};
use super::schedule::ScheduleConfig;
use super::session::{E2eeSession, Input, Output, SendState};
use super::srtp::{SrtpKeys, read_mki};

/// Something the service delivers to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Handshake(Vec<u8>),
    Welcome(Vec<u8>),
    JoinRequest(ParticipantId, Vec<u8>),
    MemberLeft(ParticipantId),
}

/// One delivery, as a hostile policy sees it.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: Option<ParticipantId>,
    pub to: ParticipantId,
    pub msg: Msg,
    /// The MLS epoch of a handshake message.
    pub epoch: Option<u64>,
    /// Whether it is a Commit.
    pub commit: bool,
}

/// What the service does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop,
    /// Deliver this many milliseconds later.
    Delay(u64),
}

type Policy = Box<dyn FnMut(u64, &Envelope) -> Verdict + Send>;

/// A member of the simulated call.
pub struct SimMember {
    pub session: E2eeSession,
    seq: u16,
    /// Packets received that decrypted / failed.
    pub decrypted: u64,
    pub failed: u64,
}

/// A leaver that kept every key it held (the strongest leaver), frozen at its leave.
pub struct Frozen {
    pub id: ParticipantId,
    pub session: E2eeSession,
    pub left_at: u64,
}

/// A packet a member sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub from: ParticipantId,
    pub at: u64,
    pub packet: Vec<u8>,
}

/// Sizes and counts the service saw.
#[derive(Debug, Clone, Default)]
pub struct DsLog {
    /// (epoch, octets) of each Commit relayed.
    pub commits: Vec<(u64, usize)>,
    /// Each Welcome relayed, with the participants it is for.
    pub welcomes: Vec<(Vec<ParticipantId>, Vec<u8>)>,
    /// Commits refused as not the first for their epoch.
    pub stale_commits: u64,
}

/// The simulated call.
pub struct SimCall {
    pub now: u64,
    call: CallSecret,
    config: ScheduleConfig,
    pub members: BTreeMap<ParticipantId, SimMember>,
    pub frozen: Vec<Frozen>,
    last_commit_epoch: Option<u64>,
    /// Keep only the first Commit per epoch (false lets a hostile service fork the group).
    pub order_commits: bool,
    queue: Vec<(u64, ParticipantId, Msg)>,
    policy: Policy,
    /// Everything relayed, for replays.
    pub relayed: Vec<Envelope>,
    pub ds: DsLog,
    /// Send one packet per member every this many ms (0: no media).
    pub media_interval_ms: u64,
    next_media: u64,
    pub sent: Vec<Sent>,
    /// Wall-clock CPU time each member spent in its session, per member.
    pub cpu: BTreeMap<ParticipantId, Duration>,
}

impl SimCall {
    pub fn new(config: ScheduleConfig) -> Self {
        Self {
            now: 1_000,
            call: CallSecret::generate(&mut rand::rng()),
            config,
            members: BTreeMap::new(),
            frozen: Vec::new(),
            last_commit_epoch: None,
            order_commits: true,
            queue: Vec::new(),
            policy: Box::new(|_, _| Verdict::Deliver),
            relayed: Vec::new(),
            ds: DsLog::default(),
            media_interval_ms: 0,
            next_media: 0,
            sent: Vec::new(),
            cpu: BTreeMap::new(),
        }
    }

    pub fn call_secret(&self) -> &CallSecret {
        &self.call
    }

    /// Makes the service misbehave: `policy(now, envelope)` decides each delivery.
    pub fn set_policy(&mut self, policy: impl FnMut(u64, &Envelope) -> Verdict + Send + 'static) {
        self.policy = Box::new(policy);
    }

    fn timed<T>(&mut self, id: ParticipantId, f: impl FnOnce(&mut E2eeSession) -> T) -> Option<T> {
        let m = self.members.get_mut(&id)?;
        let t = Instant::now();
        let r = f(&mut m.session);
        *self.cpu.entry(id).or_default() += t.elapsed();
        Some(r)
    }

    /// A new participant joins: alone it starts the group, otherwise its KeyPackage goes to
    /// every member. Returns its id.
    pub fn join(&mut self) -> ParticipantId {
        let id = ParticipantId::random(&mut rand::rng());
        let mut session =
            E2eeSession::new(self.config, &self.call, id).expect("a fresh session starts");
        let kp = session.key_package().expect("a KeyPackage builds");
        let alone = self.members.is_empty();
        self.members.insert(
            id,
            SimMember {
                session,
                seq: 0,
                decrypted: 0,
                failed: 0,
            },
        );
        let now = self.now;
        if alone {
            self.timed(id, |s| s.start_alone(now))
                .expect("member exists")
                .expect("the group starts");
        } else {
            self.announce(Msg::JoinRequest(id, kp), Some(id));
        }
        self.settle();
        id
    }

    /// `k` participants ask to join at once (the committer adds them in one Commit).
    pub fn join_many(&mut self, k: usize) -> Vec<ParticipantId> {
        let mut ids = Vec::with_capacity(k);
        for _ in 0..k {
            if self.members.is_empty() {
                ids.push(self.join());
                continue;
            }
            let id = ParticipantId::random(&mut rand::rng());
            let mut session =
                E2eeSession::new(self.config, &self.call, id).expect("a fresh session starts");
            let kp = session.key_package().expect("a KeyPackage builds");
            self.announce(Msg::JoinRequest(id, kp), None);
            self.members.insert(
                id,
                SimMember {
                    session,
                    seq: 0,
                    decrypted: 0,
                    failed: 0,
                },
            );
            ids.push(id);
        }
        self.settle();
        ids
    }

    /// A session that joins with this KeyPackage but is not announced (for replay tests:
    /// the caller decides what the service relays).
    pub fn stranger(&self, call: &CallSecret) -> (ParticipantId, E2eeSession, Vec<u8>) {
        let id = ParticipantId::random(&mut rand::rng());
        let mut s = E2eeSession::new(self.config, call, id).expect("session");
        let kp = s.key_package().expect("KeyPackage");
        (id, s, kp)
    }

    /// `id` leaves. With `keep_keys` it stays frozen with every key it held (an attacker);
    /// otherwise it erases them. Its signed leave proposal and the service's announcement
    /// go to the others (both subject to the policy).
    pub fn leave(&mut self, id: ParticipantId, keep_keys: bool) {
        let Some(mut m) = self.members.remove(&id) else {
            return;
        };
        let proposal = if keep_keys {
            m.session.propose_leave()
        } else {
            m.session.leave()
        };
        if keep_keys {
            self.frozen.push(Frozen {
                id,
                session: m.session,
                left_at: self.now,
            });
        }
        if let Some(p) = proposal {
            self.relay(id, p, None);
        }
        self.announce(Msg::MemberLeft(id), None);
        self.settle();
    }

    /// Delivers `msg` to every member (except `skip`), through the policy.
    pub fn announce(&mut self, msg: Msg, skip: Option<ParticipantId>) {
        let to: Vec<ParticipantId> = self
            .members
            .keys()
            .copied()
            .filter(|m| Some(*m) != skip)
            .collect();
        for t in to {
            self.send(None, t, msg.clone(), None, false);
        }
    }

    /// Sends `msg` to one member, through the policy.
    pub fn send(
        &mut self,
        from: Option<ParticipantId>,
        to: ParticipantId,
        msg: Msg,
        epoch: Option<u64>,
        commit: bool,
    ) {
        let env = Envelope {
            from,
            to,
            msg,
            epoch,
            commit,
        };
        let verdict = (self.policy)(self.now, &env);
        self.relayed.push(env.clone());
        match verdict {
            Verdict::Deliver => self.queue.push((self.now, to, env.msg)),
            Verdict::Delay(d) => self.queue.push((self.now + d, to, env.msg)),
            Verdict::Drop => {}
        }
    }

    /// The service's relay of a handshake message from `from`.
    fn relay(
        &mut self,
        from: ParticipantId,
        message: Vec<u8>,
        welcome: Option<(Vec<ParticipantId>, Vec<u8>)>,
    ) {
        let Some((epoch, commit)) = header(&message) else {
            return;
        };
        let to: Vec<ParticipantId> = self.members.keys().copied().collect();
        if commit {
            let next = self.last_commit_epoch.map(|e| e + 1);
            if self.order_commits && next.is_some_and(|n| n != epoch) {
                self.ds.stale_commits += 1;
                return;
            }
            self.last_commit_epoch = Some(epoch);
            self.ds.commits.push((epoch, message.len()));
            for t in to {
                self.send(
                    Some(from),
                    t,
                    Msg::Handshake(message.clone()),
                    Some(epoch),
                    true,
                );
            }
            if let Some((joiners, w)) = welcome {
                self.ds.welcomes.push((joiners.clone(), w.clone()));
                for j in joiners {
                    if self.members.contains_key(&j) {
                        self.send(Some(from), j, Msg::Welcome(w.clone()), Some(epoch), true);
                    }
                }
            }
        } else {
            for t in to.into_iter().filter(|t| *t != from) {
                self.send(
                    Some(from),
                    t,
                    Msg::Handshake(message.clone()),
                    Some(epoch),
                    false,
                );
            }
        }
    }

    /// Processes everything due now: deliveries, timers, outputs, until quiet.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            let now = self.now;
            let due: Vec<(u64, ParticipantId, Msg)> = {
                let (due, later): (Vec<_>, Vec<_>) =
                    self.queue.drain(..).partition(|(at, _, _)| *at <= now);
                self.queue = later;
                due
            };
            for (_, to, msg) in due {
                busy = true;
                self.timed(to, |s| match &msg {
                    Msg::Handshake(b) => s.handle_input(Input::Handshake(b), now),
                    Msg::Welcome(b) => s.handle_input(Input::Welcome(b), now),
                    Msg::JoinRequest(p, kp) => s.handle_input(
                        Input::JoinRequest {
                            participant: *p,
                            key_package: kp,
                        },
                        now,
                    ),
                    Msg::MemberLeft(p) => s.handle_input(Input::MemberLeft(*p), now),
                });
            }
            let ids: Vec<ParticipantId> = self.members.keys().copied().collect();
            for id in &ids {
                let due = self.members[id]
                    .session
                    .poll_timeout()
                    .is_some_and(|t| t <= now);
                if due {
                    busy = true;
                    self.timed(*id, |s| s.handle_timeout(now));
                }
            }
            for id in ids {
                let outs: Vec<Output> = match self.members.get_mut(&id) {
                    Some(m) => std::iter::from_fn(|| m.session.poll_output()).collect(),
                    None => continue,
                };
                for out in outs {
                    if let Output::SendHandshake { message, welcome } = out {
                        busy = true;
                        self.relay(id, message, welcome);
                    }
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Advances the clock to `until`, stopping at every timer, delivery and media tick.
    pub fn run_until(&mut self, until: u64) {
        self.settle();
        while self.now < until {
            let timers = self
                .members
                .values()
                .filter_map(|m| m.session.poll_timeout());
            let deliveries = self.queue.iter().map(|(at, _, _)| *at);
            let media = (self.media_interval_ms > 0).then_some(self.next_media);
            let next = timers
                .chain(deliveries)
                .chain(media)
                .filter(|t| *t > self.now)
                .min()
                .unwrap_or(until)
                .min(until);
            self.now = next;
            self.settle();
            if self.media_interval_ms > 0 && self.now >= self.next_media {
                self.media_round();
                self.next_media = self.now + self.media_interval_ms;
            }
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Every member that can send protects one packet; every other member unprotects it.
    fn media_round(&mut self) {
        let now = self.now;
        let ids: Vec<ParticipantId> = self.members.keys().copied().collect();
        for from in &ids {
            let packet = {
                let m = self.members.get_mut(from).expect("member");
                let mut p = vec![0x80, 96];
                p.extend_from_slice(&m.seq.to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, 0, 0x5e, 0xed, 0x5e, 0xed]);
                p.extend_from_slice(&[0xab; 40]);
                m.seq = m.seq.wrapping_add(1);
                match m.session.protect_rtp_vec(&mut p) {
                    Ok(()) => p,
                    Err(_) => continue,
                }
            };
            self.sent.push(Sent {
                from: *from,
                at: now,
                packet: packet.clone(),
            });
            for to in ids.iter().filter(|t| *t != from) {
                let m = self.members.get_mut(to).expect("member");
                let mut copy = packet.clone();
                match m.session.unprotect_rtp(from, &mut copy, now) {
                    Ok(_) => m.decrypted += 1,
                    Err(_) => m.failed += 1,
                }
            }
        }
    }

    /// Takes a member's session out of the call (for tests that drive it by hand).
    pub fn take(&mut self, id: ParticipantId) -> Option<E2eeSession> {
        self.members.remove(&id).map(|m| m.session)
    }

    /// A member's session.
    pub fn session(&mut self, id: ParticipantId) -> &mut E2eeSession {
        &mut self
            .members
            .get_mut(&id)
            .expect("a member of the call")
            .session
    }

    /// Send states of all members.
    pub fn states(&self) -> Vec<SendState> {
        self.members.values().map(|m| m.session.state()).collect()
    }

    /// Verification codes of all members.
    pub fn codes(&self) -> Vec<Option<(u64, String)>> {
        self.members
            .values()
            .map(|m| m.session.verification_code())
            .collect()
    }
}

/// (epoch, is a Commit) of a handshake MLSMessage, as a delivery service reads it.
pub fn header(message: &[u8]) -> Option<(u64, bool)> {
    let msg = MlsMessageIn::tls_deserialize_exact(message).ok()?;
    let p = msg.try_into_protocol_message().ok()?;
    Some((p.epoch().as_u64(), p.content_type() == ContentType::Commit))
}

/// Whether any key `session` holds or can derive opens `packet` from `from` (stateless, no
/// replay window): what a leaver that kept its keys can read.
pub fn opens(session: &E2eeSession, from: &ParticipantId, packet: &[u8]) -> bool {
    let Ok(named) = read_mki(packet) else {
        return false;
    };
    let keys = session.schedule();
    let mut epochs: Vec<_> = keys.held_epochs().collect();
    epochs.push(named);
    epochs.iter().any(|&epoch| {
        let Some(master) = keys.receive_master(from, epoch) else {
            return false;
        };
        let srtp = SrtpKeys::derive(master.key(), master.salt(), Some(epoch));
        let mut copy = packet.to_vec();
        let n = copy.len();
        copy[n - 4..].copy_from_slice(&epoch.to_bytes());
        srtp.decrypt_rtp(&mut copy, 0).is_ok()
    })
}

/// Two members of one group, both sending: `(a, b, a's id)`.
pub fn keyed_pair(config: ScheduleConfig) -> (E2eeSession, E2eeSession, ParticipantId) {
    let mut call = SimCall::new(config);
    let a = call.join();
    let b = call.join();
    call.advance(config.activation_ms + 1);
    let sa = call.take(a).expect("a is a member");
    let sb = call.take(b).expect("b is a member");
    (sa, sb, a)
}
