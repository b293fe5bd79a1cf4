//! The sans-IO routing core: one datagram, its source and the current time in; the copies
//! to send (or a STUN reply, or a drop reason) out.
//!
//! Owns the per-packet decisions: who may send, who receives, latching and consent.
//! Touches no socket and reads no clock (time is passed in), so it is unit-tested and
//! benchmarked without a network. It allocates nothing per packet: transmits go into a
//! caller-owned vector whose capacity the caller keeps ahead of the largest fan-out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::counters::{DropReason, LocalCounters};
use crate::packet::{self, Class};
use crate::stun::{self, BindingRequest};
use crate::table::{IngressLimits, Latch, Table, TokenBucket, Update};

/// What a router tells the control side, besides the transmits.
#[derive(Debug, Clone)]
pub enum ShardEvent {
    /// A verified, nominating STUN check latched or moved an endpoint to `addr`.
    Latched {
        /// Endpoint slot.
        ep: crate::table::EpIdx,
        /// Slot generation the shard saw.
        generation: u32,
        /// The checked source address.
        addr: SocketAddr,
        /// When consent lapses unless refreshed again.
        consent_until: Instant,
    },
    /// A verified check on the endpoint's selected address `addr` refreshed its consent.
    /// It moves nothing: if the endpoint has moved since, it is ignored.
    Consent {
        /// Endpoint slot.
        ep: crate::table::EpIdx,
        /// Slot generation the shard saw.
        generation: u32,
        /// The checked source address.
        addr: SocketAddr,
        /// When consent lapses unless refreshed again.
        consent_until: Instant,
    },
}

/// STUN limits: checks that pass them are the only ones that cost an HMAC. ICE agents
/// pace checks at 20/s at most (RFC 8445 Ta = 50 ms), so 50/s per source never bites a
/// real client; the shard-wide limit caps what a spoofed flood can make us verify.
const STUN_PER_SOURCE: IngressLimits = IngressLimits {
    packets_per_sec: 50,
    bytes_per_sec: 0,
    burst_ms: 1000,
};
const STUN_PER_SHARD: IngressLimits = IngressLimits {
    packets_per_sec: 20_000,
    bytes_per_sec: 0,
    burst_ms: 250,
};
/// Per-source STUN buckets live in a fixed array indexed by a keyed hash of the source:
/// memory stays bounded however many addresses a flood spoofs, and a collision only
/// makes the limit stricter for the two sources sharing a bucket.
const STUN_SOURCE_BUCKETS: usize = 4096;

/// Most distinct publishers one feedback compound is copied to: an RR carries at most 31
/// report blocks, and the caller keeps room for a whole conference's fan-out per datagram.
const MAX_FEEDBACK_TARGETS: usize = 32;

/// One copy to send: which buffer (the caller's numbering) to which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The caller's buffer index (the receive slot the datagram sits in).
    pub buf: u16,
    /// Destination.
    pub dst: SocketAddr,
}

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This many copies were pushed to the transmit list.
    Forwarded(usize),
    /// A STUN response of this length was written to the reply buffer; send it to the
    /// source.
    Reply(usize),
    /// Not forwarded; the reason has been counted.
    Dropped(DropReason),
}

/// Routing settings that do not change at run time.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    /// Consent lapses this long after the last valid STUN check (RFC 7675).
    pub consent_timeout: Duration,
}

/// A shard's routing state and per-packet logic.
pub struct Router {
    table: Table,
    cfg: RouterConfig,
    counters: LocalCounters,
    events: Vec<ShardEvent>,
    stun_shard: TokenBucket,
    stun_sources: Box<[TokenBucket]>,
    hasher: ahash::RandomState,
}

impl Router {
    /// An empty router whose secrets (hash keys) come from the OS.
    pub fn new(cfg: RouterConfig) -> Self {
        Self::seeded(cfg, rand::random())
    }

    /// An empty router whose secrets derive from `seed`: for tests and the in-memory
    /// harness, which must be deterministic. Never use a predictable seed in production:
    /// an attacker who can predict the source-bucket hash can aim collisions.
    pub fn seeded(cfg: RouterConfig, seed: u64) -> Self {
        let k = |i: u64| {
            seed.rotate_left(16 * i as u32) ^ 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i + 1)
        };
        Self {
            table: Table::default(),
            cfg,
            counters: LocalCounters::default(),
            events: Vec::with_capacity(64),
            stun_shard: TokenBucket::new(STUN_PER_SHARD),
            stun_sources: vec![TokenBucket::new(STUN_PER_SOURCE); STUN_SOURCE_BUCKETS].into(),
            hasher: ahash::RandomState::with_seeds(k(0), k(1), k(2), k(3)),
        }
    }

    /// Applies a control update.
    pub fn apply(&mut self, update: Update) {
        self.table.apply(update);
    }

    /// The routing table (read-only, for metrics and tests).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Counters accumulated since the last call; resets them.
    pub fn take_counters(&mut self) -> LocalCounters {
        std::mem::take(&mut self.counters)
    }

    /// Counters accumulated so far, for the caller to add its own I/O counts to.
    pub fn counters_mut(&mut self) -> &mut LocalCounters {
        &mut self.counters
    }

    /// Events for the control thread produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, ShardEvent> {
        self.events.drain(..)
    }

    /// Routes one datagram from `src` sitting in the caller's buffer `buf`.
    #[inline]
    pub fn handle(
        &mut self,
        buf: u16,
        pkt: &[u8],
        src: SocketAddr,
        now: Instant,
        out: &mut Vec<Transmit>,
        reply: &mut [u8; stun::MAX_RESPONSE],
    ) -> Outcome {
        let outcome = match packet::classify(pkt) {
            Class::Rtp => self.rtp(buf, pkt, src, now, out),
            Class::Rtcp => self.rtcp(buf, pkt, src, now, out),
            Class::Stun => self.stun(pkt, src, now, reply),
            Class::Other => Outcome::Dropped(DropReason::Unclassified),
        };
        match outcome {
            Outcome::Dropped(r) => self.counters.drop(r),
            Outcome::Forwarded(_) | Outcome::Reply(_) => {}
        }
        outcome
    }

    /// Finds the latched sender and charges its ingress bucket.
    #[inline]
    fn sender(&mut self, src: &SocketAddr, len: usize, now: Instant) -> Result<u32, DropReason> {
        let ep = self.table.by_addr(src).ok_or(DropReason::UnknownSource)?;
        let slot = self.table.slot_mut(ep).ok_or(DropReason::UnknownSource)?;
        if slot.bucket.take(len, now) {
            Ok(ep)
        } else {
            Err(DropReason::RateLimited)
        }
    }

    /// Queues a copy for every subscriber of `ssrc`, which `ep` must own.
    #[inline]
    fn fan_out(
        &mut self,
        ep: u32,
        ssrc: u32,
        buf: u16,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Result<usize, DropReason> {
        let t = &self.table;
        let route = t
            .route_in_conference_of(ep, ssrc)
            .filter(|r| r.owner == ep)
            .ok_or(DropReason::SsrcNotOwned)?;
        let mut n = 0;
        let mut missing = 0;
        for &sub in route.subscribers.iter() {
            match t.slot(sub).and_then(|s| s.dest(now)) {
                Some(dst) => {
                    out.push(Transmit { buf, dst });
                    n += 1;
                }
                None => missing += 1,
            }
        }
        self.counters.drops[DropReason::NoDestination as usize] += missing;
        Ok(n)
    }

    fn rtp(
        &mut self,
        buf: u16,
        pkt: &[u8],
        src: SocketAddr,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Outcome {
        let ep = match self.sender(&src, pkt.len(), now) {
            Ok(ep) => ep,
            Err(r) => return Outcome::Dropped(r),
        };
        let Some(ssrc) = packet::rtp_ssrc(pkt) else {
            return Outcome::Dropped(DropReason::Malformed);
        };
        match self.fan_out(ep, ssrc, buf, now, out) {
            Ok(n) => {
                self.counters.rtp_forwarded += u64::from(n > 0);
                Outcome::Forwarded(n)
            }
            Err(r) => Outcome::Dropped(r),
        }
    }

    fn rtcp(
        &mut self,
        buf: u16,
        pkt: &[u8],
        src: SocketAddr,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Outcome {
        let ep = match self.sender(&src, pkt.len(), now) {
            Ok(ep) => ep,
            Err(r) => return Outcome::Dropped(r),
        };
        let result = match packet::rtcp_sender_report(pkt) {
            Some(ssrc) => self.fan_out(ep, ssrc, buf, now, out),
            None => self.feedback(ep, pkt, buf, now, out),
        };
        match result {
            Ok(n) => {
                self.counters.rtcp_forwarded += u64::from(n > 0);
                Outcome::Forwarded(n)
            }
            Err(r) => Outcome::Dropped(r),
        }
    }

    /// Receiver feedback goes to the owner of each media SSRC it names, and only from an
    /// endpoint that subscribes to that SSRC, so nobody can aim feedback (PLI floods) at
    /// a stream it does not receive. SRTCP cannot be split: a compound naming several
    /// publishers goes whole to each of them, once.
    fn feedback(
        &mut self,
        ep: u32,
        pkt: &[u8],
        buf: u16,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Result<usize, DropReason> {
        let t = &self.table;
        let routes = t
            .slot(ep)
            .and_then(|s| t.routes(s.conf))
            .ok_or(DropReason::RtcpNoTarget)?;
        let mut owners = [0; MAX_FEEDBACK_TARGETS];
        let mut n_owners = 0;
        for ssrc in packet::rtcp_media_ssrcs(pkt) {
            let Some(route) = routes.get(ssrc) else {
                continue;
            };
            if owners[..n_owners].contains(&route.owner) || !route.subscribers.contains(&ep) {
                continue;
            }
            owners[n_owners] = route.owner;
            n_owners += 1;
            if n_owners == MAX_FEEDBACK_TARGETS {
                break;
            }
        }
        if n_owners == 0 {
            return Err(DropReason::RtcpNoTarget);
        }
        let mut n = 0;
        for &owner in &owners[..n_owners] {
            if let Some(dst) = t.slot(owner).and_then(|s| s.dest(now)) {
                out.push(Transmit { buf, dst });
                n += 1;
            }
        }
        if n == 0 {
            return Err(DropReason::NoDestination);
        }
        self.counters.drops[DropReason::NoDestination as usize] += (n_owners - n) as u64;
        Ok(n)
    }

    fn stun(
        &mut self,
        pkt: &[u8],
        src: SocketAddr,
        now: Instant,
        reply: &mut [u8; stun::MAX_RESPONSE],
    ) -> Outcome {
        let Ok(req) = BindingRequest::parse(pkt) else {
            return Outcome::Dropped(DropReason::StunMalformed);
        };
        let Ok((local, _remote)) = req.ufrags() else {
            return Outcome::Dropped(DropReason::StunMalformed);
        };
        let Some(ep) = self.table.by_ufrag(local) else {
            return Outcome::Dropped(DropReason::StunUnknownUser);
        };
        let Some(slot) = self.table.slot(ep) else {
            return Outcome::Dropped(DropReason::StunUnknownUser);
        };
        let Some(ice) = slot.ice.as_ref() else {
            return Outcome::Dropped(DropReason::StunUnknownUser);
        };
        // Parsing and the ufrag lookup are cheap; the HMAC is what a flood would make
        // us pay for, so the limits sit right before it.
        let bucket = self.hasher.hash_one(src) as usize % STUN_SOURCE_BUCKETS;
        if !self.stun_sources[bucket].take(pkt.len(), now) || !self.stun_shard.take(pkt.len(), now)
        {
            return Outcome::Dropped(DropReason::StunRateLimited);
        }
        let txid = req.transaction_id();
        if slot.recent.replayed(&txid, src) {
            return Outcome::Dropped(DropReason::StunReplayed);
        }
        if !req.verify_integrity(&ice.pwd) {
            return Outcome::Dropped(DropReason::StunBadIntegrity);
        }
        let len = stun::write_binding_success(reply, &txid, src, &ice.pwd);
        let generation = slot.generation;
        let current = slot.addr.map(|(a, _)| a) == Some(src);
        if let Some(slot) = self.table.slot_mut(ep) {
            slot.recent.remember(txid, src);
        }
        let consent_until = now + self.cfg.consent_timeout;
        self.counters.stun_answered += 1;
        if current {
            // A check on the selected pair refreshes its consent (RFC 7675).
            self.table
                .set_address(ep, generation, Some((src, Latch::Stun { consent_until })));
            self.events.push(ShardEvent::Consent {
                ep,
                generation,
                addr: src,
                consent_until,
            });
        } else if req.use_candidate() {
            // Media follows the pair the controlling agent nominates (RFC 8445 §8.2.1);
            // checks on other pairs are answered and move nothing.
            self.table
                .set_address(ep, generation, Some((src, Latch::Stun { consent_until })));
            self.counters.latches += 1;
            self.events.push(ShardEvent::Latched {
                ep,
                generation,
                addr: src,
                consent_until,
            });
        }
        Outcome::Reply(len)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
/// A fuzz entry point over the whole per-packet path. The first byte picks the source
/// (one of four latched endpoints of a fixed conference, or an outsider); the rest is the
/// datagram. Besides never panicking it checks the routing invariants: no copy goes back
/// to the sender or to an address no endpoint holds, nothing from an unlatched source is
/// forwarded, and no STUN reply is larger than its request.
pub fn fuzz_route(data: &[u8]) {
    use std::cell::RefCell;
    thread_local! {
        static ROUTER: RefCell<Router> = RefCell::new(fuzz_router());
    }
    let Some((&pick, pkt)) = data.split_first() else {
        return;
    };
    let idx = pick % 5;
    let src = SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(idx)));
    let now = Instant::now();
    let mut out = Vec::with_capacity(8);
    let mut reply = [0u8; stun::MAX_RESPONSE];
    ROUTER.with(|r| {
        let mut r = r.borrow_mut();
        // A verified STUN check may legitimately latch any of the five sources (the
        // fuzzer learns valid requests from the seed corpus), so the invariants are
        // stated against the table, not against fixed addresses.
        let was_latched = r.table().by_addr(&src).is_some();
        let outcome = r.handle(0, pkt, src, now, &mut out, &mut reply);
        if !was_latched {
            assert!(
                out.is_empty(),
                "a datagram from an unlatched source was forwarded"
            );
        }
        for t in &out {
            assert_ne!(t.dst, src, "echo to the sender");
            assert!(
                r.table().by_addr(&t.dst).is_some(),
                "a copy went to an address no endpoint holds"
            );
        }
        if let Outcome::Reply(n) = outcome {
            assert!(n <= pkt.len(), "a STUN reply larger than its request");
        }
    });
}

#[cfg(any(test, feature = "fuzzing"))]
fn fuzz_router() -> Router {
    use super::table::{ConfRoutesBuilder, IceCreds};
    let mut r = Router::new(RouterConfig {
        consent_timeout: Duration::from_secs(30),
    });
    let mut b = ConfRoutesBuilder::default();
    for ep in 0..4u32 {
        r.apply(Update::Endpoint {
            ep,
            generation: 1,
            conf: 0,
            ice: Some(IceCreds {
                ufrag: format!("fuzz{ep}").into(),
                pwd: b"fuzzpwdfuzzpwdfuzzpwd000".as_slice().into(),
            }),
            limits: IngressLimits::UNLIMITED,
        });
        r.apply(Update::Address {
            ep,
            generation: 1,
            addr: Some((
                SocketAddr::from(([127, 0, 0, 1], 40_000 + ep as u16)),
                Latch::Declared,
            )),
        });
        let _ = b.own(ep + 1, ep);
        for sub in 0..4 {
            b.subscribe(ep + 1, sub);
        }
    }
    r.apply(Update::Routes {
        conf: 0,
        routes: Some(std::sync::Arc::new(b.build())),
    });
    r
}
