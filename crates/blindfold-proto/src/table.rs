//! Routing state: the shard-local [`Table`] every packet is looked up in, the immutable
//! per-conference [`ConfRoutes`] shared between shards, and the [`Update`]s that change
//! them.
//!
//! Owns data layout and update application only; it performs no I/O, reads no clock and
//! knows nothing of HTTP or of packet formats.
//!
//! # Why per-shard copies fed by channels
//! Every shard owns a private `Table` and reads it with plain loads: no lock, no atomic,
//! no epoch pin on the per-packet path. The control thread is the only writer of the
//! authoritative model; it turns every change into [`Update`]s and pushes one to each
//! shard's crossbeam channel, waking the shard. A shard drains its channel between
//! receive batches, so it never waits on the control thread and updates apply while
//! forwarding continues. Channels are FIFO per shard, so a shard sees the control
//! thread's changes in order (an endpoint's routes go before its removal, a slot is
//! freed before it is reused).
//!
//! The data that changes often and is small (an endpoint's latched address and consent
//! deadline) is a delta applied in place. The derived fan-out of a conference
//! (SSRC → owner and subscribers) is rebuilt by the control thread as an immutable
//! [`ConfRoutes`] and shared by `Arc`: a rebuild costs O(conference size), is done
//! once for all shards, and a shard swaps it in with one pointer store. Subscribers are
//! stored as endpoint slots, not addresses, so a NAT rebinding never forces a rebuild.
//!
//! Selective forwarding keeps the split: the routes say what each subscriber should get
//! (for a simulcast track, a target layer or pause per subscriber, in
//! [`ConfRoutes::video`]); the shard-local state of *when* it may switch (at a key frame)
//! lives beside the table, in [`crate::select::Selection`].
//!
//! # Relays: one static address, many endpoints
//! A relay link between two forwarders is one endpoint per call on each side, each with
//! the other forwarder's media address declared as its static address, so every call
//! linking the same pair of forwarders has an endpoint at the same address. A declared
//! address may therefore be shared: the address index then holds [`SHARED`], and the
//! endpoint is found by (address, SSRC) in a demultiplexing index derived from the
//! routes of the sharing endpoints' conferences: the SSRCs each one owns (its RTP and
//! sender reports) and the SSRCs it subscribes to (the receiver feedback that crosses
//! back). The index is rebuilt when a sharing endpoint comes or goes or its conference's
//! routes change, never per packet; media from an address held by one endpoint (every
//! participant) never looks at it. An SSRC claimed by endpoints of two calls at one
//! address resolves to neither: a collision drops that SSRC's packets on the link
//! (counted as `unknown_source`) rather than deliver one call's packets to another.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::select::{AudioRoute, Media, VideoRoute};

/// Index of an endpoint slot. Allocated by the control thread, reused after removal.
pub type EpIdx = u32;
/// Index of a conference slot. Allocated by the control thread, reused after removal.
pub type ConfIdx = u32;

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// What the address index holds for a declared address that several endpoints share
/// (relays of several calls to one peer forwarder): resolve by SSRC with
/// [`Table::demux`]. Never a slot index: slots are allocated from 0 up and a table of
/// 2^32 - 1 endpoints does not fit in memory.
pub const SHARED: EpIdx = EpIdx::MAX;

/// ICE-lite credentials of one endpoint: the forwarder's ufrag and the pwd that keys
/// MESSAGE-INTEGRITY.
#[derive(Clone, Debug)]
pub struct IceCreds {
    /// The forwarder-side ufrag (first half of USERNAME).
    pub ufrag: Box<str>,
    /// The pwd as bytes (the HMAC-SHA1 key).
    pub pwd: Box<[u8]>,
}

/// One SSRC's route: who may send it and who receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsrcRoute {
    /// The only endpoint allowed to send this SSRC.
    pub owner: EpIdx,
    /// Endpoints that get a copy of every packet of this SSRC (never the owner).
    pub subscribers: Box<[EpIdx]>,
    /// What else the forwarder reads of its packets: nothing (plain), audio levels, or
    /// frame marking of a selectively forwarded video layer, whose subscribers are then
    /// the track's ([`ConfRoutes::video`]), not `subscribers`.
    pub media: Media,
}

/// The derived fan-out of one conference; immutable once built, shared by all shards.
#[derive(Clone, Debug, Default)]
pub struct ConfRoutes {
    by_ssrc: FastMap<u32, SsrcRoute>,
    /// Selectively forwarded video tracks ([`Media::Video`] indexes here).
    pub video: Box<[VideoRoute]>,
    /// Audio streams whose levels feed speaker detection ([`Media::Audio`] indexes
    /// here).
    pub audio: Box<[AudioRoute]>,
}

impl ConfRoutes {
    /// The route of `ssrc`, if some endpoint of the conference owns it.
    #[inline]
    pub fn get(&self, ssrc: u32) -> Option<&SsrcRoute> {
        self.by_ssrc.get(&ssrc)
    }

    /// Number of SSRCs routed.
    pub fn len(&self) -> usize {
        self.by_ssrc.len()
    }

    /// True when no SSRC is routed.
    pub fn is_empty(&self) -> bool {
        self.by_ssrc.is_empty()
    }

    /// Every routed SSRC with its route, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &SsrcRoute)> {
        self.by_ssrc.iter().map(|(s, r)| (*s, r))
    }
}

/// An SSRC was claimed by two endpoints of one conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ssrc {ssrc} is already owned by another endpoint")]
pub struct SsrcTaken {
    /// The contested SSRC.
    pub ssrc: u32,
}

/// Builds a [`ConfRoutes`] from the control thread's model of one conference.
#[derive(Default)]
pub struct ConfRoutesBuilder {
    owners: FastMap<u32, (EpIdx, Vec<EpIdx>, Media)>,
    video: Vec<VideoRoute>,
    audio: Vec<AudioRoute>,
}

impl ConfRoutesBuilder {
    /// Declares that `owner` sends `ssrc`.
    pub fn own(&mut self, ssrc: u32, owner: EpIdx) -> Result<(), SsrcTaken> {
        match self.owners.get(&ssrc) {
            Some((o, _, _)) if *o != owner => Err(SsrcTaken { ssrc }),
            Some(_) => Ok(()),
            None => {
                self.owners.insert(ssrc, (owner, Vec::new(), Media::Plain));
                Ok(())
            }
        }
    }

    /// Declares what the forwarder reads of `ssrc`'s packets (after [`Self::own`]).
    pub fn set_media(&mut self, ssrc: u32, media: Media) {
        if let Some((_, _, m)) = self.owners.get_mut(&ssrc) {
            *m = media;
        }
    }

    /// Adds a selectively forwarded video track; returns its index for [`Media::Video`].
    /// Its `state` offset is assigned at [`Self::build`].
    pub fn video_track(&mut self, track: VideoRoute) -> u32 {
        self.video.push(track);
        (self.video.len() - 1) as u32
    }

    /// Adds an audio stream whose levels are read; returns its index for
    /// [`Media::Audio`].
    pub fn audio_stream(&mut self, stream: AudioRoute) -> u32 {
        self.audio.push(stream);
        (self.audio.len() - 1) as u32
    }

    /// Adds `subscriber` to the receivers of `ssrc`. Unknown SSRCs, the owner itself
    /// and duplicates are ignored, so callers can derive subscriptions naively.
    pub fn subscribe(&mut self, ssrc: u32, subscriber: EpIdx) {
        if let Some((owner, subs, _)) = self.owners.get_mut(&ssrc)
            && *owner != subscriber
            && !subs.contains(&subscriber)
        {
            subs.push(subscriber);
        }
    }

    /// Freezes the routes.
    pub fn build(self) -> ConfRoutes {
        let by_ssrc = self
            .owners
            .into_iter()
            .map(|(ssrc, (owner, subs, media))| {
                (
                    ssrc,
                    SsrcRoute {
                        owner,
                        subscribers: subs.into_boxed_slice(),
                        media,
                    },
                )
            })
            .collect();
        let mut video = self.video;
        let mut state = 0u32;
        for t in &mut video {
            t.state = state;
            state += t.subs.len() as u32;
        }
        ConfRoutes {
            by_ssrc,
            video: video.into_boxed_slice(),
            audio: self.audio.into_boxed_slice(),
        }
    }
}

/// Where an endpoint's address came from, which decides whether consent applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latch {
    /// Declared through the control API (a plain-RTP peer): no consent checks.
    Declared,
    /// Latched by a verified STUN check; consent expires at the given instant.
    Stun {
        /// When consent lapses unless refreshed (RFC 7675).
        consent_until: Instant,
    },
}

/// A change to the routing state, sent by the control thread to every shard in order.
#[derive(Debug, Clone)]
pub enum Update {
    /// Creates (or replaces) endpoint slot `ep` in conference `conf`, unlatched.
    Endpoint {
        /// Slot index.
        ep: EpIdx,
        /// Generation of the slot, bumped on every reuse; stale latch events carry an
        /// older one and are ignored.
        generation: u32,
        /// The conference it belongs to.
        conf: ConfIdx,
        /// ICE credentials; `None` for peers latched only by a declared address.
        ice: Option<IceCreds>,
        /// Ingress limits for this endpoint.
        limits: IngressLimits,
    },
    /// Frees endpoint slot `ep`: it stops sending and receiving at once.
    RemoveEndpoint {
        /// Slot index.
        ep: EpIdx,
    },
    /// Sets (or clears, with `None`) the address of `ep`.
    Address {
        /// Slot index.
        ep: EpIdx,
        /// Must match the slot's generation, or the update is stale and ignored.
        generation: u32,
        /// The new address; `None` unlatches.
        addr: Option<(SocketAddr, Latch)>,
    },
    /// Replaces the routes of conference `conf`; `None` removes the conference.
    Routes {
        /// Conference slot.
        conf: ConfIdx,
        /// The new routes.
        routes: Option<Arc<ConfRoutes>>,
    },
}

/// Per-endpoint ingress limits (token buckets). Zero disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngressLimits {
    /// Sustained packets per second.
    pub packets_per_sec: u32,
    /// Sustained bytes per second.
    pub bytes_per_sec: u32,
    /// Burst allowance, in milliseconds of the sustained rates.
    pub burst_ms: u32,
}

impl IngressLimits {
    /// No limits.
    pub const UNLIMITED: Self = Self {
        packets_per_sec: 0,
        bytes_per_sec: 0,
        burst_ms: 0,
    };
}

impl IngressLimits {
    /// Checks that a full bucket can pass at least one datagram of `max_packet` bytes
    /// under every limit that is on: a burst holding less than one packet (or fewer
    /// bytes than one maximum datagram) would drop everything, silently.
    pub fn check(&self, max_packet: usize) -> Result<(), IngressLimitError> {
        let burst = u64::from(self.burst_ms);
        if self.packets_per_sec != 0 && u64::from(self.packets_per_sec) * burst < 1000 {
            return Err(IngressLimitError::Packets {
                packets_per_sec: self.packets_per_sec,
                burst_ms: self.burst_ms,
            });
        }
        let bytes = u64::from(self.bytes_per_sec) * burst / 1000;
        if self.bytes_per_sec != 0 && bytes < max_packet as u64 {
            return Err(IngressLimitError::Bytes {
                bytes_per_sec: self.bytes_per_sec,
                burst_ms: self.burst_ms,
                bytes,
                max_packet,
            });
        }
        Ok(())
    }
}

/// Ingress limits that would drop every datagram (see [`IngressLimits::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngressLimitError {
    /// The packet bucket holds less than one packet.
    #[error(
        "ingress limits would drop every packet: a burst of {burst_ms} ms at \
         {packets_per_sec} packets/s holds less than one packet (raise the burst or the \
         rate so that rate x burst >= 1000, or set the packet rate to 0 to switch it off)"
    )]
    Packets {
        /// Configured packets per second.
        packets_per_sec: u32,
        /// Configured burst.
        burst_ms: u32,
    },
    /// The byte bucket holds less than one maximum datagram.
    #[error(
        "ingress limits would drop every large packet: a burst of {burst_ms} ms at \
         {bytes_per_sec} bytes/s holds {bytes} bytes, less than one {max_packet}-byte \
         datagram (raise the burst or the rate, or set the byte rate to 0 to switch it off)"
    )]
    Bytes {
        /// Configured bytes per second.
        bytes_per_sec: u32,
        /// Configured burst.
        burst_ms: u32,
        /// What the burst holds.
        bytes: u64,
        /// The largest datagram the forwarder accepts.
        max_packet: usize,
    },
}

/// A token bucket over packets and bytes, refilled from the `now` the caller passes in.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limits: IngressLimits,
    packets: f64,
    bytes: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket for `limits`.
    pub fn new(limits: IngressLimits) -> Self {
        let burst = f64::from(limits.burst_ms) / 1000.0;
        Self {
            limits,
            packets: f64::from(limits.packets_per_sec) * burst,
            bytes: f64::from(limits.bytes_per_sec) * burst,
            last: None,
        }
    }

    /// Takes one packet of `len` bytes; false when either bucket is empty.
    #[inline]
    pub fn take(&mut self, len: usize, now: Instant) -> bool {
        let l = self.limits;
        if l.packets_per_sec == 0 && l.bytes_per_sec == 0 {
            return true;
        }
        let burst = f64::from(l.burst_ms) / 1000.0;
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.packets = (self.packets + dt * f64::from(l.packets_per_sec))
                .min(f64::from(l.packets_per_sec) * burst);
            self.bytes = (self.bytes + dt * f64::from(l.bytes_per_sec))
                .min(f64::from(l.bytes_per_sec) * burst);
        }
        self.last = Some(now);
        let len = len as f64;
        let pkt_ok = l.packets_per_sec == 0 || self.packets >= 1.0;
        let byte_ok = l.bytes_per_sec == 0 || self.bytes >= len;
        if pkt_ok && byte_ok {
            if l.packets_per_sec != 0 {
                self.packets -= 1.0;
            }
            if l.bytes_per_sec != 0 {
                self.bytes -= len;
            }
            true
        } else {
            false
        }
    }
}

/// How many of an endpoint's recent checks a shard remembers, with the address each came
/// from: the checks in flight and a couple of consent intervals' worth.
pub const RECENT_CHECKS: usize = 4;

/// An endpoint's recently verified STUN transaction ids and their sources, so a captured
/// check replayed from another address is refused. Per shard: a replay that hashes to
/// another shard is not seen here, and moves nothing there either, because a move needs
/// the return-path proof.
#[derive(Debug, Clone, Default)]
pub struct RecentChecks {
    entries: [Option<([u8; 12], SocketAddr)>; RECENT_CHECKS],
    next: usize,
}

impl RecentChecks {
    /// Whether `txid` was already verified for this endpoint from an address other than
    /// `src` (a retransmission from `src` itself is not a replay).
    #[inline]
    pub fn replayed(&self, txid: &[u8; 12], src: SocketAddr) -> bool {
        self.entries
            .iter()
            .flatten()
            .any(|(t, a)| t == txid && *a != src)
    }

    /// Whether `txid` was already verified for this endpoint (from any address).
    #[inline]
    pub fn seen(&self, txid: &[u8; 12]) -> bool {
        self.entries.iter().flatten().any(|(t, _)| t == txid)
    }

    /// Remembers a verified check, evicting the oldest.
    #[inline]
    pub fn remember(&mut self, txid: [u8; 12], src: SocketAddr) {
        if self.entries.iter().flatten().any(|(t, _)| *t == txid) {
            return;
        }
        self.entries[self.next] = Some((txid, src));
        self.next = (self.next + 1) % RECENT_CHECKS;
    }
}

/// How many addresses other than its selected one an endpoint can be proving at once on
/// one shard: an agent with two interfaces, or a rebinding while the old pair still runs.
pub const PROBES: usize = 2;

/// An address an endpoint's agent checked from that is not (yet) where its media goes:
/// the return-path proof in progress, or done and waiting for a nomination.
///
/// No media goes to `addr` before an answer to the forwarder's own check (transaction id
/// `txid`) comes back from it; until then the forwarder sends it at most three times the
/// bytes it received from it (QUIC's anti-amplification rule, RFC 9000 §8), which
/// `credit` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The address being proven.
    pub addr: SocketAddr,
    /// The forwarder's check's transaction id: unpredictable, seen only at `addr`.
    pub txid: [u8; 12],
    /// The agent nominated this address (USE-CANDIDATE): media moves once proven.
    pub nominated: bool,
    /// The answer came back from `addr`.
    pub proven: bool,
    /// When the proof started; it is void after the consent timeout.
    pub since: Instant,
    /// Bytes the forwarder may still send to `addr`: 3x received, less sent.
    pub credit: usize,
}

/// One endpoint as a shard sees it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Generation of this slot (see [`Update::Endpoint`]).
    pub generation: u32,
    /// Conference slot.
    pub conf: ConfIdx,
    /// ICE credentials, if the endpoint latches through STUN.
    pub ice: Option<IceCreds>,
    /// Latched address and how it was latched.
    pub addr: Option<(SocketAddr, Latch)>,
    /// Ingress token bucket (per shard: a sender's packets hash to one shard).
    pub bucket: TokenBucket,
}

/// An endpoint's STUN state on one shard. Kept apart from its [`Slot`], which every media
/// packet reads, so the slots the hot path walks stay small and dense.
#[derive(Debug, Clone)]
pub struct StunState {
    /// Recently verified checks, against replays.
    pub recent: RecentChecks,
    /// Return-path proofs of addresses other than the selected one.
    pub probes: [Option<Probe>; PROBES],
    /// Budget of checks from the selected address (`route::STUN_SELECTED`).
    pub selected: TokenBucket,
    /// Budget of checks from other addresses (`route::STUN_NEW_ADDRESS`).
    pub new_address: TokenBucket,
}

impl Default for StunState {
    fn default() -> Self {
        Self {
            recent: RecentChecks::default(),
            probes: [None; PROBES],
            selected: TokenBucket::new(crate::route::STUN_SELECTED),
            new_address: TokenBucket::new(crate::route::STUN_NEW_ADDRESS),
        }
    }
}

impl Slot {
    /// The address to send to at `now`, if latched and consent has not lapsed.
    #[inline]
    pub fn dest(&self, now: Instant) -> Option<SocketAddr> {
        match self.addr {
            Some((a, Latch::Declared)) => Some(a),
            Some((a, Latch::Stun { consent_until })) if now < consent_until => Some(a),
            _ => None,
        }
    }
}

/// The endpoints that declared one static address, and, when there are two or more, who
/// each SSRC seen from there belongs to.
#[derive(Default)]
struct Declared {
    eps: Vec<EpIdx>,
    /// SSRC → the endpoint that owns it (its RTP and sender reports come from here).
    own: FastMap<u32, EpIdx>,
    /// SSRC → the endpoint that subscribes to it (feedback about it comes from here).
    sub: FastMap<u32, EpIdx>,
}

/// A shard's private copy of the routing state.
#[derive(Default)]
pub struct Table {
    slots: Vec<Option<Slot>>,
    /// STUN state, indexed like `slots`.
    stun: Vec<StunState>,
    /// Source address → endpoint, or [`SHARED`].
    by_addr: FastMap<SocketAddr, EpIdx>,
    by_ufrag: FastMap<Box<str>, EpIdx>,
    confs: Vec<Option<Arc<ConfRoutes>>>,
    /// Declared (static) addresses and their endpoints.
    declared: FastMap<SocketAddr, Declared>,
    /// The declared addresses two or more endpoints share, so a routes change finds the
    /// indexes to rebuild without walking every declared address.
    shared: Vec<SocketAddr>,
}

impl Table {
    /// Applies one update. Never fails: stale or unknown references are ignored, since
    /// the control thread's model is authoritative and a later update repairs any gap.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Endpoint {
                ep,
                generation,
                conf,
                ice,
                limits,
            } => {
                self.remove_endpoint(ep);
                let i = ep as usize;
                if self.slots.len() <= i {
                    self.slots.resize_with(i + 1, || None);
                    self.stun.resize_with(i + 1, StunState::default);
                }
                self.stun[i] = StunState::default();
                if let Some(ice) = &ice {
                    self.by_ufrag.insert(ice.ufrag.clone(), ep);
                }
                self.slots[i] = Some(Slot {
                    generation,
                    conf,
                    ice,
                    addr: None,
                    bucket: TokenBucket::new(limits),
                });
            }
            Update::RemoveEndpoint { ep } => self.remove_endpoint(ep),
            Update::Address {
                ep,
                generation,
                addr,
            } => {
                self.set_address(ep, generation, addr);
            }
            Update::Routes { conf, routes } => {
                let i = conf as usize;
                if self.confs.len() <= i {
                    self.confs.resize_with(i + 1, || None);
                }
                self.confs[i] = routes;
                let stale: Vec<SocketAddr> = self
                    .shared
                    .iter()
                    .copied()
                    .filter(|a| {
                        self.declared.get(a).is_some_and(|d| {
                            d.eps
                                .iter()
                                .any(|&e| self.slot(e).is_some_and(|s| s.conf == conf))
                        })
                    })
                    .collect();
                for a in stale {
                    self.reindex(a);
                }
            }
        }
    }

    /// Sets the address of `ep` if `generation` is current; keeps the address index in
    /// step. Returns whether anything changed.
    ///
    /// A latched (STUN) address belongs to one endpoint: whoever held it before loses it.
    /// A declared address may be shared by several declared endpoints (relays), which are
    /// then told apart by SSRC; a declared address never takes a STUN-latched one's
    /// place silently either: the latched endpoint loses it, as before.
    pub fn set_address(
        &mut self,
        ep: EpIdx,
        generation: u32,
        addr: Option<(SocketAddr, Latch)>,
    ) -> bool {
        let Some(Some(slot)) = self.slots.get_mut(ep as usize) else {
            return false;
        };
        if slot.generation != generation {
            return false;
        }
        let old = slot.addr;
        slot.addr = addr;
        let new = addr.map(|(a, _)| a);
        // The selected address needs no proof any more.
        if let Some(st) = self.stun.get_mut(ep as usize) {
            for p in &mut st.probes {
                if p.is_some_and(|p| Some(p.addr) == new) {
                    *p = None;
                }
            }
        }
        let declared =
            |l: Option<(SocketAddr, Latch)>| l.map(|(a, how)| (a, matches!(how, Latch::Declared)));
        if declared(old) == declared(addr) {
            return true;
        }
        if let Some((a, how)) = old {
            self.unindex(ep, a, how);
        }
        match addr {
            Some((a, Latch::Declared)) => self.index_declared(ep, a),
            Some((a, Latch::Stun { .. })) => self.index_latched(ep, a),
            None => {}
        }
        true
    }

    /// Removes `ep` from the index of address `a`, which it held as `how`.
    fn unindex(&mut self, ep: EpIdx, a: SocketAddr, how: Latch) {
        match how {
            Latch::Stun { .. } => {
                if self.by_addr.get(&a) == Some(&ep) {
                    self.by_addr.remove(&a);
                }
            }
            Latch::Declared => {
                let Some(d) = self.declared.get_mut(&a) else {
                    return;
                };
                d.eps.retain(|&e| e != ep);
                let (empty, only) = (d.eps.is_empty(), (d.eps.len() == 1).then(|| d.eps[0]));
                if empty {
                    self.declared.remove(&a);
                    self.by_addr.remove(&a);
                } else if let Some(only) = only {
                    self.by_addr.insert(a, only);
                }
                self.reindex(a);
            }
        }
    }

    /// `ep` declared address `a`: it joins the endpoints there; a STUN-latched endpoint
    /// holding `a` loses it.
    fn index_declared(&mut self, ep: EpIdx, a: SocketAddr) {
        if !self.declared.contains_key(&a)
            && let Some(prev) = self.by_addr.remove(&a)
            && prev != ep
            && let Some(Some(p)) = self.slots.get_mut(prev as usize)
        {
            p.addr = None;
        }
        let d = self.declared.entry(a).or_default();
        if !d.eps.contains(&ep) {
            d.eps.push(ep);
        }
        let holder = if d.eps.len() == 1 { ep } else { SHARED };
        self.by_addr.insert(a, holder);
        self.reindex(a);
    }

    /// `ep` latched address `a` by STUN: it is the only endpoint there. Whoever held it
    /// (a rebinding reusing another endpoint's old address, or endpoints that declared
    /// it) loses it; the router never selects an address another conference holds, so
    /// this happens only within one conference or on the model's say.
    fn index_latched(&mut self, ep: EpIdx, a: SocketAddr) {
        if let Some(d) = self.declared.remove(&a) {
            for e in d.eps {
                if e != ep
                    && let Some(Some(p)) = self.slots.get_mut(e as usize)
                {
                    p.addr = None;
                }
            }
            self.reindex(a);
        }
        if let Some(prev) = self.by_addr.insert(a, ep)
            && prev != ep
            && let Some(Some(p)) = self.slots.get_mut(prev as usize)
        {
            p.addr = None;
        }
    }

    /// Rebuilds the SSRC index of declared address `a` from the routes of its
    /// endpoints' conferences, and keeps the list of shared addresses in step. Runs on
    /// control updates only: O(routes of the conferences sharing `a`).
    fn reindex(&mut self, a: SocketAddr) {
        let Some(mut d) = self.declared.remove(&a) else {
            self.shared.retain(|s| *s != a);
            return;
        };
        d.own.clear();
        d.sub.clear();
        if d.eps.len() < 2 {
            self.shared.retain(|s| *s != a);
        } else {
            if !self.shared.contains(&a) {
                self.shared.push(a);
            }
            for &ep in &d.eps {
                let Some(routes) = self.slot(ep).and_then(|s| self.routes(s.conf)) else {
                    continue;
                };
                for (ssrc, route) in routes.iter() {
                    if route.owner == ep {
                        claim(&mut d.own, ssrc, ep);
                    }
                    if route.subscribers.contains(&ep) {
                        claim(&mut d.sub, ssrc, ep);
                    }
                }
            }
        }
        self.declared.insert(a, d);
    }

    fn remove_endpoint(&mut self, ep: EpIdx) {
        let Some(entry) = self.slots.get_mut(ep as usize) else {
            return;
        };
        if let Some(slot) = entry.take() {
            if let Some((a, how)) = slot.addr {
                self.unindex(ep, a, how);
            }
            if let Some(ice) = slot.ice
                && self.by_ufrag.get(&ice.ufrag) == Some(&ep)
            {
                self.by_ufrag.remove(&ice.ufrag);
            }
        }
    }

    /// The endpoint that sent `pkt` from `addr`, a declared address several endpoints
    /// share: the owner of the RTP or sender-report SSRC, or, for receiver feedback, the
    /// subscriber of the first media SSRC it names that resolves. Out of line: only
    /// relay traffic between forwarders comes here.
    #[cold]
    #[inline(never)]
    pub fn demux(&self, addr: &SocketAddr, pkt: &[u8]) -> Option<EpIdx> {
        let d = self.declared.get(addr)?;
        let ep = match crate::packet::classify(pkt) {
            crate::packet::Class::Rtp => d.own.get(&crate::packet::rtp_ssrc(pkt)?).copied(),
            crate::packet::Class::Rtcp => match crate::packet::rtcp_sender_report(pkt) {
                Some(ssrc) => d.own.get(&ssrc).copied(),
                None => crate::packet::rtcp_media_ssrcs(pkt)
                    .find_map(|ssrc| d.sub.get(&ssrc).copied().filter(|&e| e != SHARED)),
            },
            _ => None,
        };
        ep.filter(|&e| e != SHARED)
    }

    /// The endpoint latched at `addr`, or [`SHARED`] when several declared endpoints
    /// share it: the first lookup of every media packet, so always inline.
    #[inline(always)]
    pub fn by_addr(&self, addr: &SocketAddr) -> Option<EpIdx> {
        self.by_addr.get(addr).copied()
    }

    /// The endpoint whose forwarder-side ufrag is `ufrag`.
    #[inline]
    pub fn by_ufrag(&self, ufrag: &str) -> Option<EpIdx> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// Endpoint slot `ep`.
    #[inline]
    pub fn slot(&self, ep: EpIdx) -> Option<&Slot> {
        self.slots.get(ep as usize).and_then(Option::as_ref)
    }

    /// Endpoint slot `ep`, mutable.
    #[inline]
    pub fn slot_mut(&mut self, ep: EpIdx) -> Option<&mut Slot> {
        self.slots.get_mut(ep as usize).and_then(Option::as_mut)
    }

    /// Endpoint slot `ep` with its STUN state.
    #[inline]
    pub fn slot_stun(&self, ep: EpIdx) -> Option<(&Slot, &StunState)> {
        let slot = self.slot(ep)?;
        Some((slot, self.stun.get(ep as usize)?))
    }

    /// Endpoint slot `ep` with its STUN state, mutable.
    #[inline]
    pub fn slot_stun_mut(&mut self, ep: EpIdx) -> Option<(&Slot, &mut StunState)> {
        let slot = self.slots.get(ep as usize)?.as_ref()?;
        Some((slot, self.stun.get_mut(ep as usize)?))
    }

    /// Routes of conference `conf`.
    #[inline]
    pub fn routes(&self, conf: ConfIdx) -> Option<&ConfRoutes> {
        self.confs.get(conf as usize).and_then(|c| c.as_deref())
    }

    /// The route of `ssrc` in the conference endpoint `ep` belongs to.
    #[inline]
    pub fn route_in_conference_of(&self, ep: EpIdx, ssrc: u32) -> Option<&SsrcRoute> {
        self.routes(self.slot(ep)?.conf)?.get(ssrc)
    }

    /// Number of live endpoint slots and of latched addresses (for metrics and tests).
    pub fn counts(&self) -> (usize, usize) {
        (self.slots.iter().flatten().count(), self.by_addr.len())
    }

    /// Number of declared addresses two or more endpoints share (for tests).
    pub fn shared_addresses(&self) -> usize {
        self.shared.len()
    }
}

/// Records that `ep` claims `ssrc` at one shared address; a claim by another endpoint
/// makes the SSRC ambiguous ([`SHARED`]), which resolves to nobody.
fn claim(index: &mut FastMap<u32, EpIdx>, ssrc: u32, ep: EpIdx) {
    index
        .entry(ssrc)
        .and_modify(|e| {
            if *e != ep {
                *e = SHARED;
            }
        })
        .or_insert(ep);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ep(table: &mut Table, ep: EpIdx, generation: u32, conf: ConfIdx) {
        table.apply(Update::Endpoint {
            ep,
            generation,
            conf,
            ice: Some(IceCreds {
                ufrag: format!("u{ep}").into(),
                pwd: b"pwd".to_vec().into(),
            }),
            limits: IngressLimits::UNLIMITED,
        });
    }

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn builder_rejects_double_ownership_and_skips_owner_as_subscriber() {
        let mut b = ConfRoutesBuilder::default();
        b.own(10, 1).unwrap();
        assert_eq!(b.own(10, 2), Err(SsrcTaken { ssrc: 10 }));
        b.own(10, 1).unwrap();
        b.subscribe(10, 1);
        b.subscribe(10, 2);
        b.subscribe(10, 2);
        b.subscribe(99, 3);
        let r = b.build();
        assert_eq!(r.get(10).unwrap().subscribers.as_ref(), &[2]);
        assert!(r.get(99).is_none());
    }

    #[test]
    fn addresses_follow_latch_rebind_and_removal() {
        let mut t = Table::default();
        ep(&mut t, 0, 1, 0);
        ep(&mut t, 1, 1, 0);
        assert!(t.set_address(0, 1, Some((addr(1000), Latch::Declared))));
        assert_eq!(t.by_addr(&addr(1000)), Some(0));
        // stale generation is ignored
        assert!(!t.set_address(0, 7, Some((addr(2000), Latch::Declared))));
        assert_eq!(t.by_addr(&addr(2000)), None);
        // rebinding moves the endpoint
        t.set_address(0, 1, Some((addr(2000), Latch::Declared)));
        assert_eq!(t.by_addr(&addr(1000)), None);
        assert_eq!(t.by_addr(&addr(2000)), Some(0));
        // another endpoint latching the address unlatches the first (declaring it too
        // would share it: see declared_addresses_are_shared_and_told_apart_by_ssrc)
        let consent_until = Instant::now() + Duration::from_secs(30);
        t.set_address(1, 1, Some((addr(2000), Latch::Stun { consent_until })));
        assert_eq!(t.by_addr(&addr(2000)), Some(1));
        assert!(t.slot(0).unwrap().addr.is_none());
        // removal frees address and ufrag
        t.apply(Update::RemoveEndpoint { ep: 1 });
        assert_eq!(t.by_addr(&addr(2000)), None);
        assert_eq!(t.by_ufrag("u1"), None);
        assert_eq!(t.by_ufrag("u0"), Some(0));
        assert_eq!(t.counts(), (1, 0));
    }

    fn rtp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn declared_addresses_are_shared_and_told_apart_by_ssrc() {
        let mut t = Table::default();
        // Conference c: relay c (declared) owns 10 + c; member 3 + c owns 30 + c and the
        // relay subscribes to it.
        for c in 0..2 {
            ep(&mut t, c, 1, c);
            ep(&mut t, 3 + c, 1, c);
            let mut b = ConfRoutesBuilder::default();
            b.own(10 + c, c).unwrap();
            b.own(30 + c, 3 + c).unwrap();
            b.subscribe(30 + c, c);
            t.apply(Update::Routes {
                conf: c,
                routes: Some(Arc::new(b.build())),
            });
        }
        let peer = addr(9);
        t.set_address(0, 1, Some((peer, Latch::Declared)));
        assert_eq!(t.by_addr(&peer), Some(0), "one holder: no demultiplexing");
        assert_eq!(t.shared_addresses(), 0);
        t.set_address(1, 1, Some((peer, Latch::Declared)));
        assert_eq!(t.by_addr(&peer), Some(SHARED));
        assert_eq!(t.shared_addresses(), 1);
        assert_eq!(t.demux(&peer, &rtp(10)), Some(0));
        assert_eq!(t.demux(&peer, &rtp(11)), Some(1));
        assert_eq!(
            t.demux(&peer, &rtp(30)),
            None,
            "owned by a member, not a relay"
        );
        assert_eq!(t.demux(&peer, &[0x80]), None);
        // Both relays receive at the shared address.
        let now = Instant::now();
        assert_eq!(t.slot(0).unwrap().dest(now), Some(peer));
        assert_eq!(t.slot(1).unwrap().dest(now), Some(peer));
        // Relay 1 goes: relay 0 holds the address alone again.
        t.apply(Update::RemoveEndpoint { ep: 1 });
        assert_eq!(t.by_addr(&peer), Some(0));
        assert_eq!(t.shared_addresses(), 0);
        // A STUN latch takes a declared address whole (the router refuses it across
        // conferences before it comes to this).
        t.set_address(1, 1, Some((peer, Latch::Declared)));
        ep(&mut t, 1, 2, 1);
        t.set_address(1, 2, Some((peer, Latch::Declared)));
        assert_eq!(t.by_addr(&peer), Some(SHARED));
        t.set_address(
            3,
            1,
            Some((
                peer,
                Latch::Stun {
                    consent_until: now + Duration::from_secs(30),
                },
            )),
        );
        assert_eq!(t.by_addr(&peer), Some(3));
        assert!(t.slot(0).unwrap().addr.is_none());
        assert!(t.slot(1).unwrap().addr.is_none());
        assert_eq!(t.shared_addresses(), 0);
        assert_eq!(t.counts(), (4, 1));
    }

    #[test]
    fn slot_reuse_clears_old_state() {
        let mut t = Table::default();
        ep(&mut t, 3, 1, 0);
        t.set_address(3, 1, Some((addr(1), Latch::Declared)));
        ep(&mut t, 3, 2, 5);
        assert_eq!(t.by_addr(&addr(1)), None);
        assert_eq!(t.slot(3).unwrap().conf, 5);
        assert!(!t.set_address(3, 1, Some((addr(1), Latch::Declared))));
    }

    #[test]
    fn consent_expiry_stops_destination() {
        let mut t = Table::default();
        ep(&mut t, 0, 1, 0);
        let now = Instant::now();
        t.set_address(
            0,
            1,
            Some((
                addr(5),
                Latch::Stun {
                    consent_until: now + Duration::from_secs(30),
                },
            )),
        );
        let s = t.slot(0).unwrap();
        assert_eq!(s.dest(now), Some(addr(5)));
        assert_eq!(s.dest(now + Duration::from_secs(31)), None);
    }

    #[test]
    fn recent_checks_catch_replays_until_evicted() {
        let mut r = RecentChecks::default();
        r.remember([1; 12], addr(1));
        assert!(
            !r.replayed(&[1; 12], addr(1)),
            "a retransmission is no replay"
        );
        assert!(r.replayed(&[1; 12], addr(2)));
        r.remember([1; 12], addr(2));
        assert!(
            r.replayed(&[1; 12], addr(2)),
            "the first source stays the owner"
        );
        for t in 2..=RECENT_CHECKS as u8 {
            r.remember([t; 12], addr(1));
            assert!(r.replayed(&[1; 12], addr(2)));
        }
        r.remember([99; 12], addr(1));
        assert!(
            !r.replayed(&[1; 12], addr(2)),
            "evicted after {RECENT_CHECKS} newer"
        );
    }

    #[test]
    fn token_bucket_limits_packets_and_refills() {
        let now = Instant::now();
        let mut b = TokenBucket::new(IngressLimits {
            packets_per_sec: 100,
            bytes_per_sec: 0,
            burst_ms: 100,
        });
        let passed = (0..50).filter(|_| b.take(100, now)).count();
        assert_eq!(passed, 10);
        assert!(b.take(100, now + Duration::from_millis(20)));
        let mut unlimited = TokenBucket::new(IngressLimits::UNLIMITED);
        assert!((0..10_000).all(|_| unlimited.take(1500, now)));
    }
}
