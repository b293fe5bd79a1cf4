//! An in-memory forwarder for behaviour tests: the control model and one router per
//! shard, driven by datagrams and a simulated clock (str0m's way: inputs in, datagrams and
//! events out).
//!
//! Owns, synchronously and in order, the glue the forwarder's threads provide in
//! production: a model change becomes updates applied to every shard in order; a
//! datagram is routed by the shard its source hashes to (as `SO_REUSEPORT` hashes a
//! flow to one socket); the shard's events go back to the model, whose updates reach
//! every shard before the next input. It must not touch a socket, a thread or the clock:
//! time moves only with [`Sim::advance`], so a test of a 30 s consent timeout runs in
//! microseconds and gives the same result on every run (the routers' secrets are seeded).
//! As time moves it runs the periodic work the forwarder's threads run: each shard's
//! [`Router::poll`] (audio activity reports) and the model's [`Model::tick`] (speaker
//! decisions), in steps of at most [`TICK`], collecting the speaker events.
//!
//! What it leaves out is what the real-process smoke tests (`tests/` at the workspace
//! root) are for: sockets, batching, threads, the HTTP server and the propagation delay
//! between a shard's latch and the other shards.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::counters::{DropReason, LocalCounters};
use crate::model::{Limits, Model, ModelError, NewEndpoint, SpeakerEvent};
use crate::route::{Outcome, Router, RouterConfig, ShardEvent, StunReply, Transmit};
use crate::stun;
use crate::table::{EpIdx, IngressLimits, Update};

/// The longest step [`Sim::advance`] takes between two runs of the periodic work (the
/// shards' wakes and the control thread's ticker are about this frequent).
pub const TICK: Duration = Duration::from_millis(10);

/// The simulated forwarder's media address: the source of everything it sends.
pub const MEDIA_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    10_000,
);

/// How the simulated forwarder is set up.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Number of shards (routers); datagrams are spread over them by source address.
    pub shards: usize,
    /// The model's limits.
    pub limits: Limits,
    /// Ingress limits given to every endpoint.
    pub ingress: IngressLimits,
    /// Consent timeout (RFC 7675).
    pub consent_timeout: Duration,
    /// Seed of the routers' secrets; a different seed per shard is derived from it.
    pub seed: u64,
}

impl Default for SimConfig {
    /// One shard, `blindfold serve`'s default limits and consent timeout, no ingress
    /// limits.
    fn default() -> Self {
        Self {
            shards: 1,
            limits: Limits {
                conferences: 10_000,
                endpoints_per_conference: 256,
                tracks_per_endpoint: 16,
                ssrcs_per_track: 8,
                subscriptions_per_endpoint: 512,
            },
            ingress: IngressLimits::UNLIMITED,
            consent_timeout: Duration::from_secs(30),
            seed: 1,
        }
    }
}

/// One datagram the forwarder sent (always from its one media address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Destination.
    pub dst: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What became of one input datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The router's verdict.
    pub outcome: Outcome,
    /// Everything sent because of it, in order.
    pub sent: Vec<Sent>,
}

impl Handled {
    /// The destinations, in order.
    pub fn dsts(&self) -> Vec<SocketAddr> {
        self.sent.iter().map(|s| s.dst).collect()
    }

    /// What was sent to `dst`.
    pub fn to(&self, dst: SocketAddr) -> impl Iterator<Item = &[u8]> {
        self.sent
            .iter()
            .filter(move |s| s.dst == dst)
            .map(|s| s.data.as_slice())
    }
}

/// The simulated forwarder.
pub struct Sim {
    now: Instant,
    model: Model,
    shards: Vec<Router>,
    counters: LocalCounters,
    tx: Vec<Transmit>,
    reply: Box<StunReply>,
    speakers: Vec<(Instant, SpeakerEvent)>,
}

impl Sim {
    /// A forwarder with no conferences, at an arbitrary start instant.
    pub fn new(cfg: SimConfig) -> Self {
        let router = RouterConfig {
            consent_timeout: cfg.consent_timeout,
        };
        Self {
            now: Instant::now(),
            model: Model::new(cfg.limits, cfg.ingress),
            shards: (0..cfg.shards.max(1) as u64)
                .map(|i| Router::seeded(router, cfg.seed.wrapping_add(i)))
                .collect(),
            counters: LocalCounters::default(),
            tx: Vec::with_capacity(1024),
            reply: Box::default(),
            speakers: Vec::new(),
        }
    }

    /// The simulated current time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward, running the shards' polls and the model's ticks on the
    /// way at least every [`TICK`].
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            self.now = end.min(self.now + TICK);
            self.periodic();
            if self.now >= end {
                break;
            }
        }
    }

    fn periodic(&mut self) {
        for i in 0..self.shards.len() {
            self.shards[i].poll(self.now);
            let events: Vec<ShardEvent> = self.shards[i].drain_events().collect();
            self.deliver(events);
        }
        let (updates, events) = self.model.tick(self.now);
        self.broadcast(&updates);
        let now = self.now;
        self.speakers.extend(events.into_iter().map(|e| (now, e)));
    }

    /// Every speaker change so far, with when it was decided.
    pub fn speaker_events(&self) -> &[(Instant, SpeakerEvent)] {
        &self.speakers
    }

    /// Runs one model operation (what a control-API request does) and applies its
    /// updates to every shard, in order.
    pub fn control<T>(
        &mut self,
        op: impl FnOnce(&mut Model) -> Result<(T, Vec<Update>), ModelError>,
    ) -> Result<T, ModelError> {
        let (out, updates) = op(&mut self.model)?;
        self.broadcast(&updates);
        Ok(out)
    }

    /// The model, to inspect what the control API would report.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Shard `i`'s router (for its table).
    pub fn router(&self, i: usize) -> &Router {
        &self.shards[i]
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard datagrams from `src` are routed by: a fixed hash of the address, as the
    /// kernel's reuseport hash keeps one flow on one socket.
    pub fn shard_of(&self, src: SocketAddr) -> usize {
        // FNV-1a: deterministic across runs and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let ip = match src.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        for b in ip.iter().chain(src.port().to_be_bytes().iter()) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.shards.len() as u64) as usize
    }

    /// The endpoint slot every shard sends to and accepts from at `addr`, if the shards
    /// agree on one (they always should once events are delivered).
    pub fn endpoint_at(&self, addr: SocketAddr) -> Option<EpIdx> {
        let first = self.shards[0].table().by_addr(&addr);
        self.shards
            .iter()
            .all(|r| r.table().by_addr(&addr) == first)
            .then_some(first)
            .flatten()
    }

    /// Counters of every shard since the start.
    pub fn counters(&self) -> &LocalCounters {
        &self.counters
    }

    /// Datagrams dropped for `reason` since the start, over all shards.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.counters.drops[reason as usize]
    }

    /// Receives one datagram from `src` at the current time: routes it on its shard,
    /// delivers that shard's events to the model (and the resulting updates to every
    /// shard), and returns what was sent.
    pub fn receive(&mut self, src: SocketAddr, data: &[u8]) -> Handled {
        let shard = self.shard_of(src);
        self.tx.clear();
        let outcome =
            self.shards[shard].handle(0, data, src, self.now, &mut self.tx, &mut self.reply);
        let mut sent: Vec<Sent> = self
            .tx
            .iter()
            .map(|t| Sent {
                dst: t.dst,
                data: data.to_vec(),
            })
            .collect();
        if let Outcome::Reply { check, response } = outcome {
            if check > 0 {
                sent.push(Sent {
                    dst: src,
                    data: self.reply.check[..check].to_vec(),
                });
            }
            sent.push(Sent {
                dst: src,
                data: self.reply.response[..response].to_vec(),
            });
        }
        let events: Vec<ShardEvent> = self.shards[shard].drain_events().collect();
        self.deliver(events);
        let c = self.shards[shard].take_counters();
        add(&mut self.counters, &c);
        Handled { outcome, sent }
    }

    /// Creates conference `conf` if it does not exist, then endpoint `id` in it; returns
    /// an ICE agent holding the credentials the control API would hand out.
    pub fn join(&mut self, conf: &str, id: &str) -> Agent {
        if self.model.conference(conf, self.now).is_err() {
            self.control(|m| m.create_conference(Some(conf.into())))
                .expect("conference created");
        }
        let ep: NewEndpoint = self
            .control(|m| m.create_endpoint(conf, Some(id.into())))
            .expect("endpoint created");
        Agent {
            conf: conf.into(),
            id: id.into(),
            ep: ep.ep,
            ufrag: ep.ufrag,
            pwd: ep.pwd,
            client_ufrag: format!("cli-{id}"),
            txids: 0,
        }
    }

    /// Runs the ICE exchange for `agent` from `from` with a nominating check (as
    /// blindfold's participant does). Returns whether the forwarder's answer verified;
    /// afterwards media to the agent's endpoint goes to `from` if the forwarder accepted
    /// it there.
    pub fn latch(&mut self, agent: &mut Agent, from: SocketAddr) -> bool {
        self.check(agent, from, true)
    }

    /// Sends one check from `agent` at `from`, nominating its pair or not, and plays the
    /// agent's part in what follows. Returns whether the forwarder's answer verified.
    pub fn check(&mut self, agent: &mut Agent, from: SocketAddr, nominate: bool) -> bool {
        let check = agent.check(nominate);
        let h = self.receive(from, &check.data);
        let answered = h.to(from).any(|d| agent.verifies(&check, d));
        // The agent answers the forwarder's return-path check, from the same address.
        let answers: Vec<Vec<u8>> = h
            .to(from)
            .filter_map(|d| agent.answer(d, MEDIA_ADDR))
            .collect();
        for a in answers {
            self.receive(from, &a);
        }
        answered
    }

    fn deliver(&mut self, events: Vec<ShardEvent>) {
        for ev in events {
            match ev {
                ShardEvent::Latched {
                    ep,
                    generation,
                    addr,
                    consent_until,
                } => {
                    let updates = self
                        .model
                        .latched(ep, generation, addr, consent_until, self.now);
                    self.broadcast(&updates);
                }
                ShardEvent::Consent {
                    ep,
                    generation,
                    addr,
                    consent_until,
                } => {
                    if let Some(u) = self.model.consent(ep, generation, addr, consent_until) {
                        self.broadcast(&[u]);
                    }
                }
                ShardEvent::Speech {
                    conf,
                    ep,
                    generation,
                    activity,
                } => self.model.speech(conf, ep, generation, activity, self.now),
            }
        }
    }

    fn broadcast(&mut self, updates: &[Update]) {
        for r in &mut self.shards {
            for u in updates {
                r.apply(u.clone());
            }
        }
    }
}

fn add(into: &mut LocalCounters, c: &LocalCounters) {
    into.rx_packets += c.rx_packets;
    into.rx_bytes += c.rx_bytes;
    into.tx_packets += c.tx_packets;
    into.tx_bytes += c.tx_bytes;
    into.rtp_forwarded += c.rtp_forwarded;
    into.rtcp_forwarded += c.rtcp_forwarded;
    into.stun_answered += c.stun_answered;
    into.latches += c.latches;
    into.ext_missing += c.ext_missing;
    into.ext_malformed += c.ext_malformed;
    into.layer_switches += c.layer_switches;
    for (a, b) in into.drops.iter_mut().zip(c.drops.iter()) {
        *a += b;
    }
}

/// One STUN check an [`Agent`] sent: its bytes and transaction id.
#[derive(Debug, Clone)]
pub struct Check {
    /// The transaction id.
    pub txid: [u8; 12],
    /// The datagram.
    pub data: Vec<u8>,
}

/// A participant's ICE agent as the tests need it: the credentials the control API
/// handed out for its endpoint, and its own ufrag.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Conference id.
    pub conf: String,
    /// Endpoint id.
    pub id: String,
    /// Endpoint slot.
    pub ep: EpIdx,
    /// The forwarder-side ufrag.
    pub ufrag: String,
    /// The pwd.
    pub pwd: String,
    /// The agent's own ufrag.
    pub client_ufrag: String,
    txids: u64,
}

impl Agent {
    /// A fresh Binding request, nominating (USE-CANDIDATE) or not.
    pub fn check(&mut self, nominate: bool) -> Check {
        self.txids += 1;
        let mut txid = [0u8; 12];
        txid[..8].copy_from_slice(&self.txids.to_be_bytes());
        txid[8..].copy_from_slice(&self.ep.to_be_bytes());
        let data = stun::client::Check {
            forwarder_ufrag: &self.ufrag,
            client_ufrag: &self.client_ufrag,
            pwd: self.pwd.as_bytes(),
            nominate,
        }
        .encode(txid);
        Check { txid, data }
    }

    /// The agent's answer to a forwarder's return-path check `pkt` that came from
    /// `forwarder`, or `None` if `pkt` is not one for this endpoint.
    pub fn answer(&self, pkt: &[u8], forwarder: SocketAddr) -> Option<Vec<u8>> {
        stun::answer_check(
            pkt,
            forwarder,
            &self.ufrag,
            &self.client_ufrag,
            self.pwd.as_bytes(),
        )
    }

    /// Whether `response` is the forwarder's verified answer to `check`.
    pub fn verifies(&self, check: &Check, response: &[u8]) -> bool {
        stun::parse_binding_success(response, &check.txid, self.pwd.as_bytes()).is_ok()
    }
}
