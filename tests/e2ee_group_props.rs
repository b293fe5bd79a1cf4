//! Property test of the key schedule over random join/leave/time sequences, with real HPKE
//! key messages and real SRTP packets between every pair of members.
//!
//! After every event the group settles (key messages delivered, the rekey activation delay
//! passed, one round of media so members that were a step behind adopt the newest step;
//! in that round a receiver may lack the sender's epoch but nothing else may fail). Then:
//! - every current member decrypts every other current member's packet;
//! - a member that left (kept frozen with every secret it had, the strongest leaver) holds
//!   no secret for, and cannot decrypt, any packet sent after its leave settled;
//! - a joiner, once keyed, holds no secret for and cannot decrypt any packet sent before
//!   it joined;
//! - no epoch id ever names two different secrets, across key-generator changes.
//!
//! Every member uses the same SSRC, so the (key, nonce) separation rests on the per-sender
//! keys alone.

use std::collections::{BTreeMap, HashMap};

use blindfold::e2ee::{
    CallSecret, E2eeError, E2eeSession, EpochId, HpkeTransport, Input, KeyPair, KeySchedule,
    Member, Output, ParticipantId, ScheduleConfig, SrtpError,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const SSRC: u32 = 0x5eed_5eed;

struct Node {
    session: E2eeSession<HpkeTransport>,
    member: Member,
    seq: u16,
}

struct Sent {
    from: ParticipantId,
    epoch: EpochId,
    packet: Vec<u8>,
}

struct Leaver {
    session: E2eeSession<HpkeTransport>,
    /// Packets logged from this index on were sent after the leave settled.
    log_from: usize,
}

struct Group {
    call: CallSecret,
    config: ScheduleConfig,
    nodes: BTreeMap<ParticipantId, Node>,
    leavers: Vec<Leaver>,
    log: Vec<Sent>,
    epoch_fingerprints: HashMap<EpochId, [u8; 16]>,
    now: u64,
    joins: u64,
    rng: StdRng,
}

impl Group {
    fn new(seed: u64) -> Self {
        let mut group = Self {
            call: CallSecret::from_bytes([9; 32]),
            config: ScheduleConfig::default(),
            nodes: BTreeMap::new(),
            leavers: Vec::new(),
            log: Vec::new(),
            epoch_fingerprints: HashMap::new(),
            now: 1_000,
            joins: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        group.join();
        group
    }

    fn fresh_rng(&mut self) -> Box<StdRng> {
        Box::new(StdRng::seed_from_u64(rand::Rng::next_u64(&mut self.rng)))
    }

    /// Moves key messages until none are left; returns how many were delivered.
    fn deliver(&mut self) {
        loop {
            let mut queue = Vec::new();
            for (id, node) in &mut self.nodes {
                while let Some(out) = node.session.poll_output() {
                    if let Output::SendKeyMessage { to, message } = out {
                        queue.push((*id, to, message));
                    }
                }
            }
            if queue.is_empty() {
                return;
            }
            for (from, to, message) in queue {
                if let Some(node) = self.nodes.get_mut(&to) {
                    node.session
                        .handle_input(
                            Input::KeyMessage {
                                from,
                                message: &message,
                            },
                            self.now,
                        )
                        .expect("a genuine key message is accepted");
                }
            }
        }
    }

    fn advance(&mut self, dt: u64) {
        let target = self.now + dt;
        loop {
            let next = self
                .nodes
                .values()
                .filter_map(|n| n.session.poll_timeout())
                .min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    for node in self.nodes.values_mut() {
                        node.session.handle_timeout(self.now).unwrap();
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = target;
        for node in self.nodes.values_mut() {
            node.session.handle_timeout(self.now).unwrap();
        }
        self.deliver();
    }

    fn join(&mut self) -> ParticipantId {
        self.joins += 1;
        let id = self.call.participant_id(b"user", &self.joins.to_be_bytes());
        let keys = KeyPair::generate(&mut *self.fresh_rng());
        let member = Member {
            id,
            joined_at: self.joins,
            transport_key: keys.public_bytes().to_vec(),
        };
        let roster: Vec<Member> = self.nodes.values().map(|n| n.member.clone()).collect();
        let transport = HpkeTransport::new(id, keys, self.fresh_rng());
        let schedule = KeySchedule::new(
            self.config,
            &member,
            roster,
            transport,
            self.fresh_rng(),
            self.now,
        )
        .unwrap();
        for node in self.nodes.values_mut() {
            node.session
                .handle_input(Input::MemberJoined(member.clone()), self.now)
                .unwrap();
        }
        self.nodes.insert(
            id,
            Node {
                session: E2eeSession::new(schedule),
                member,
                seq: 0,
            },
        );
        self.deliver();
        id
    }

    fn leave(&mut self, id: ParticipantId) {
        let node = self.nodes.remove(&id).expect("a member leaves");
        for other in self.nodes.values_mut() {
            other
                .session
                .handle_input(Input::MemberLeft(id), self.now)
                .unwrap();
        }
        self.deliver();
        self.settle();
        self.leavers.push(Leaver {
            session: node.session,
            log_from: self.log.len(),
        });
    }

    fn settle(&mut self) {
        self.advance(self.config.rekey_activation_ms + 1);
        self.round(false);
    }

    /// Every member sends one packet that every other member receives.
    fn round(&mut self, strict: bool) {
        let ids: Vec<ParticipantId> = self.nodes.keys().copied().collect();
        for from in &ids {
            let (packet, plain, epoch) = {
                let node = self.nodes.get_mut(from).unwrap();
                node.seq = node.seq.wrapping_add(1);
                let mut plain = vec![0x80, 96];
                plain.extend_from_slice(&node.seq.to_be_bytes());
                plain.extend_from_slice(&[0, 0, 0, 0]);
                plain.extend_from_slice(&SSRC.to_be_bytes());
                plain.extend_from_slice(from.as_bytes());
                let mut packet = plain.clone();
                node.session
                    .protect_rtp_vec(&mut packet)
                    .expect("a keyed member sends");
                (packet, plain, node.session.sending_epoch().unwrap())
            };
            for to in &ids {
                if to == from {
                    continue;
                }
                let mut buf = packet.clone();
                let result = self
                    .nodes
                    .get_mut(to)
                    .unwrap()
                    .session
                    .unprotect_rtp(from, &mut buf, self.now);
                match result {
                    Ok(n) => assert_eq!(&buf[..n], &plain[..]),
                    Err(e) if strict => panic!("{to} cannot decrypt {from} in {epoch:?}: {e}"),
                    Err(E2eeError::Srtp(SrtpError::UnknownEpoch(_))) => {}
                    Err(e) => panic!("unexpected failure while settling: {e}"),
                }
            }
            if strict {
                self.log.push(Sent {
                    from: *from,
                    epoch,
                    packet,
                });
            }
        }
    }

    fn check(&mut self) {
        self.round(true);
        // No epoch id names two secrets, whoever generated them.
        for node in self.nodes.values().chain([]) {
            let schedule = node.session.schedule();
            for epoch in schedule.held_epochs() {
                let probe = ParticipantId::from_bytes([0; 16]);
                let fingerprint = *schedule.master_keys(&probe, epoch).unwrap().key();
                let seen = self.epoch_fingerprints.entry(epoch).or_insert(fingerprint);
                assert_eq!(*seen, fingerprint, "epoch id {epoch:?} reused");
            }
        }
        // Leavers learn nothing sent after their leave settled.
        for leaver in &mut self.leavers {
            for sent in &self.log[leaver.log_from..] {
                let schedule = leaver.session.schedule();
                assert!(
                    schedule.receive_master(&sent.from, sent.epoch).is_none(),
                    "a leaver holds the secret of {:?}",
                    sent.epoch
                );
                let mut buf = sent.packet.clone();
                assert!(
                    leaver
                        .session
                        .unprotect_rtp(&sent.from, &mut buf, 0)
                        .is_err()
                );
            }
        }
    }

    fn check_joiner_blind_to_past(&mut self, joiner: ParticipantId, log_before: usize) {
        let node = self.nodes.get_mut(&joiner).unwrap();
        assert!(
            node.session.can_send(),
            "a joiner is keyed once messages are delivered"
        );
        for sent in &self.log[..log_before] {
            assert!(
                node.session
                    .schedule()
                    .receive_master(&sent.from, sent.epoch)
                    .is_none(),
                "a joiner holds the pre-join secret of {:?}",
                sent.epoch
            );
            if node.session.schedule().is_member(&sent.from) && sent.from != joiner {
                let mut buf = sent.packet.clone();
                assert!(
                    node.session
                        .unprotect_rtp(&sent.from, &mut buf, self.now)
                        .is_err()
                );
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Join,
    Leave(prop::sample::Index),
    LeaveKeyGenerator,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Join),
        2 => any::<prop::sample::Index>().prop_map(Op::Leave),
        1 => Just(Op::LeaveKeyGenerator),
        2 => (0u64..70_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_membership_keeps_the_key_schedule_sound(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..14),
    ) {
        let mut group = Group::new(seed);
        group.check();
        for op in ops {
            match op {
                Op::Join => {
                    let before = group.log.len();
                    let id = group.join();
                    group.settle();
                    group.check_joiner_blind_to_past(id, before);
                }
                Op::Leave(index) if group.nodes.len() > 1 => {
                    let ids: Vec<ParticipantId> = group.nodes.keys().copied().collect();
                    group.leave(ids[index.index(ids.len())]);
                }
                Op::LeaveKeyGenerator if group.nodes.len() > 1 => {
                    let generator = group
                        .nodes
                        .values()
                        .min_by_key(|n| n.member.joined_at)
                        .map(|n| n.member.id)
                        .unwrap();
                    let before: Vec<EpochId> = group.nodes[&generator]
                        .session.schedule().held_epochs().collect();
                    group.leave(generator);
                    // The new key generator's generation is above anything the old one held.
                    let top = before.iter().map(|e| e.generation()).max().unwrap();
                    for node in group.nodes.values() {
                        let sending = node.session.sending_epoch().unwrap();
                        prop_assert!(sending.generation() > top);
                    }
                }
                Op::Leave(_) | Op::LeaveKeyGenerator => {}
                Op::Advance(dt) => {
                    group.advance(dt);
                    group.settle();
                }
            }
            group.check();
        }
    }
}
