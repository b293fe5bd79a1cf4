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
use crate::packet::{self, Class, RtcpRoute};
use crate::stun::{self, BindingRequest};
use crate::table::{IngressLimits, Latch, Table, TokenBucket, Update};

/// What a router tells the control side, besides the transmits.
#[derive(Debug, Clone)]
pub enum ShardEvent {
    /// A verified STUN check latched, moved or refreshed an endpoint.
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
    /// An empty router.
    pub fn new(cfg: RouterConfig) -> Self {
        Self {
            table: Table::default(),
            cfg,
            counters: LocalCounters::default(),
            events: Vec::with_capacity(64),
            stun_shard: TokenBucket::new(STUN_PER_SHARD),
            stun_sources: vec![TokenBucket::new(STUN_PER_SOURCE); STUN_SOURCE_BUCKETS].into(),
            hasher: ahash::RandomState::new(),
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
                self.counters.rtp_forwarded += 1;
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
        let result = match packet::rtcp_route(pkt) {
            Some(RtcpRoute::FromSender(ssrc)) => self.fan_out(ep, ssrc, buf, now, out),
            Some(RtcpRoute::ToMedia(ssrc)) => self.feedback(ep, ssrc, buf, now, out),
            None => Err(DropReason::RtcpNoTarget),
        };
        match result {
            Ok(n) => {
                self.counters.rtcp_forwarded += 1;
                Outcome::Forwarded(n)
            }
            Err(r) => Outcome::Dropped(r),
        }
    }

    /// Receiver feedback goes to the owner of the media SSRC, and only from an endpoint
    /// that subscribes to it, so nobody can aim feedback (PLI floods) at a stream it
    /// does not receive.
    fn feedback(
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
            .filter(|r| r.subscribers.contains(&ep))
            .ok_or(DropReason::RtcpNoTarget)?;
        match t.slot(route.owner).and_then(|s| s.dest(now)) {
            Some(dst) => {
                out.push(Transmit { buf, dst });
                Ok(1)
            }
            None => Err(DropReason::NoDestination),
        }
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
        if !req.verify_integrity(&ice.pwd) {
            return Outcome::Dropped(DropReason::StunBadIntegrity);
        }
        let len = stun::write_binding_success(reply, &req.transaction_id(), src, &ice.pwd);
        let generation = slot.generation;
        let moved = slot.addr.map(|(a, _)| a) != Some(src);
        let consent_until = now + self.cfg.consent_timeout;
        self.table
            .set_address(ep, generation, Some((src, Latch::Stun { consent_until })));
        if moved {
            self.counters.latches += 1;
        }
        self.counters.stun_answered += 1;
        self.events.push(ShardEvent::Latched {
            ep,
            generation,
            addr: src,
            consent_until,
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{ConfRoutesBuilder, IceCreds, IngressLimits};
    use std::sync::Arc;

    const PWD: &str = "0123456789abcdefghijklmn";

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn rtp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xee; 40]);
        p
    }

    fn pli(sender: u32, media: u32) -> Vec<u8> {
        let mut p = vec![0x81, 206, 0, 2];
        p.extend_from_slice(&sender.to_be_bytes());
        p.extend_from_slice(&media.to_be_bytes());
        p
    }

    fn sr(sender: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&sender.to_be_bytes());
        p.extend_from_slice(&[0x11; 20]);
        p
    }

    /// Conference 0 with endpoints 0 (publishes 100), 1 and 2 (subscribe), 3 (not
    /// subscribed); all declared-latched at ports 1000+ep.
    fn router() -> Router {
        let mut r = Router::new(RouterConfig {
            consent_timeout: Duration::from_secs(30),
        });
        for ep in 0..4u32 {
            r.apply(Update::Endpoint {
                ep,
                generation: 1,
                conf: 0,
                ice: Some(IceCreds {
                    ufrag: format!("fwd{ep}").into(),
                    pwd: PWD.as_bytes().into(),
                }),
                limits: IngressLimits::UNLIMITED,
            });
            r.apply(Update::Address {
                ep,
                generation: 1,
                addr: Some((addr(1000 + ep as u16), Latch::Declared)),
            });
        }
        let mut b = ConfRoutesBuilder::default();
        b.own(100, 0).unwrap();
        b.own(200, 1).unwrap();
        b.subscribe(100, 1);
        b.subscribe(100, 2);
        b.subscribe(200, 0);
        r.apply(Update::Routes {
            conf: 0,
            routes: Some(Arc::new(b.build())),
        });
        r
    }

    fn handle(
        r: &mut Router,
        pkt: &[u8],
        src: SocketAddr,
        now: Instant,
    ) -> (Outcome, Vec<Transmit>) {
        let mut out = Vec::with_capacity(16);
        let mut reply = [0u8; stun::MAX_RESPONSE];
        let o = r.handle(7, pkt, src, now, &mut out, &mut reply);
        (o, out)
    }

    #[test]
    fn rtp_fans_out_to_subscribers_only() {
        let mut r = router();
        let (o, out) = handle(&mut r, &rtp(100), addr(1000), Instant::now());
        assert_eq!(o, Outcome::Forwarded(2));
        let dsts: Vec<_> = out.iter().map(|t| t.dst).collect();
        assert_eq!(dsts, vec![addr(1001), addr(1002)]);
        assert!(out.iter().all(|t| t.buf == 7));
    }

    #[test]
    fn unknown_source_and_foreign_ssrc_are_dropped() {
        let mut r = router();
        let now = Instant::now();
        assert_eq!(
            handle(&mut r, &rtp(100), addr(9999), now).0,
            Outcome::Dropped(DropReason::UnknownSource)
        );
        // Endpoint 3 tries to send endpoint 0's SSRC.
        assert_eq!(
            handle(&mut r, &rtp(100), addr(1003), now).0,
            Outcome::Dropped(DropReason::SsrcNotOwned)
        );
        let c = r.take_counters();
        assert_eq!(c.drops[DropReason::UnknownSource as usize], 1);
        assert_eq!(c.drops[DropReason::SsrcNotOwned as usize], 1);
    }

    #[test]
    fn rtcp_routes_both_ways() {
        let mut r = router();
        let now = Instant::now();
        // SR from the publisher reaches its subscribers.
        let (o, out) = handle(&mut r, &sr(100), addr(1000), now);
        assert_eq!(o, Outcome::Forwarded(2));
        assert_eq!(out[0].dst, addr(1001));
        // PLI from a subscriber reaches the publisher.
        let (o, out) = handle(&mut r, &pli(7, 100), addr(1002), now);
        assert_eq!(o, Outcome::Forwarded(1));
        assert_eq!(out[0].dst, addr(1000));
        // PLI from a non-subscriber is refused.
        assert_eq!(
            handle(&mut r, &pli(7, 100), addr(1003), now).0,
            Outcome::Dropped(DropReason::RtcpNoTarget)
        );
    }

    #[test]
    fn stun_latches_moves_and_rejects_bad_integrity() {
        let mut r = router();
        let now = Instant::now();
        let req = stun::binding_request([1; 12], "fwd3", "cli", PWD.as_bytes());
        let mut out = Vec::new();
        let mut reply = [0u8; stun::MAX_RESPONSE];
        let o = r.handle(0, &req, addr(5000), now, &mut out, &mut reply);
        let Outcome::Reply(len) = o else {
            panic!("expected a reply, got {o:?}")
        };
        let mapped = stun::parse_binding_success(&reply[..len], &[1; 12], PWD.as_bytes()).unwrap();
        assert_eq!(mapped, addr(5000));
        assert_eq!(r.table().by_addr(&addr(5000)), Some(3));
        assert_eq!(r.table().by_addr(&addr(1003)), None);
        assert_eq!(r.drain_events().count(), 1);

        let bad = stun::binding_request([2; 12], "fwd2", "cli", b"wrong-password-xxxxxxxxx");
        let o = r.handle(0, &bad, addr(6000), now, &mut out, &mut reply);
        assert_eq!(o, Outcome::Dropped(DropReason::StunBadIntegrity));
        assert_eq!(r.table().by_addr(&addr(6000)), None);
        assert_eq!(r.drain_events().count(), 0);
    }

    #[test]
    fn stun_floods_from_one_source_are_limited() {
        let mut r = router();
        let now = Instant::now();
        let bad = stun::binding_request([2; 12], "fwd2", "cli", b"wrong-password-xxxxxxxxx");
        let mut reply = [0u8; stun::MAX_RESPONSE];
        let limited = (0..200)
            .filter(|_| {
                r.handle(0, &bad, addr(6000), now, &mut Vec::new(), &mut reply)
                    == Outcome::Dropped(DropReason::StunRateLimited)
            })
            .count();
        assert_eq!(
            limited, 150,
            "50 checks per second per source, then refused"
        );
        // Another source is not affected.
        let good = stun::binding_request([1; 12], "fwd1", "cli", PWD.as_bytes());
        let o = r.handle(0, &good, addr(6001), now, &mut Vec::new(), &mut reply);
        assert!(matches!(o, Outcome::Reply(_)), "{o:?}");
    }

    #[test]
    fn consent_lapse_stops_copies() {
        let mut r = router();
        let now = Instant::now();
        let req = stun::binding_request([1; 12], "fwd1", "cli", PWD.as_bytes());
        let mut reply = [0u8; stun::MAX_RESPONSE];
        r.handle(0, &req, addr(5001), now, &mut Vec::new(), &mut reply);
        let later = now + Duration::from_secs(31);
        let (o, out) = handle(&mut r, &rtp(100), addr(1000), later);
        assert_eq!(o, Outcome::Forwarded(1));
        assert_eq!(out[0].dst, addr(1002));
    }

    #[test]
    fn removed_endpoint_gets_nothing_at_once() {
        let mut r = router();
        r.apply(Update::RemoveEndpoint { ep: 2 });
        let (o, out) = handle(&mut r, &rtp(100), addr(1000), Instant::now());
        assert_eq!(o, Outcome::Forwarded(1));
        assert_eq!(out[0].dst, addr(1001));
        assert_eq!(
            handle(&mut r, &rtp(1), addr(1002), Instant::now()).0,
            Outcome::Dropped(DropReason::UnknownSource)
        );
    }

    #[test]
    fn ingress_limit_drops_excess() {
        let mut r = router();
        r.apply(Update::Endpoint {
            ep: 0,
            generation: 2,
            conf: 0,
            ice: None,
            limits: IngressLimits {
                packets_per_sec: 10,
                bytes_per_sec: 0,
                burst_ms: 1000,
            },
        });
        r.apply(Update::Address {
            ep: 0,
            generation: 2,
            addr: Some((addr(1000), Latch::Declared)),
        });
        let now = Instant::now();
        let ok = (0..100)
            .filter(|_| {
                matches!(
                    handle(&mut r, &rtp(100), addr(1000), now).0,
                    Outcome::Forwarded(_)
                )
            })
            .count();
        assert_eq!(ok, 10);
    }
}
