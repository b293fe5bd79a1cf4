//! Selective forwarding on a shard: which layer of a video track each subscriber gets and
//! when it may switch, and the audio levels that feed speaker detection.
//!
//! Owns the shard-local mutable state behind the immutable routes (the layer each
//! subscriber is on, when each layer was last seen, each audio stream's level history)
//! and the per-packet decisions over it. The routes themselves ([`VideoRoute`],
//! [`AudioRoute`], inside [`crate::table::ConfRoutes`]) come from the control model; this
//! module never decides *what* a subscriber should get (last-N, pins, top-K, pause: the
//! model does, as a target layer), only *when* the packets can follow the target without
//! handing a receiver something it cannot decode. It reads no clock, allocates nothing
//! per packet (state is re-laid out only when routes change) and knows nothing of sockets.
//!
//! # Switching rules
//! Per (track, subscriber) the shard remembers the layer the subscriber currently gets
//! (`current`, or none). A packet of layer `l` goes to the subscriber when:
//! - `current == l` and the target is still some layer: the old layer keeps flowing
//!   until the new one can start, so the receiver never goes dark waiting;
//! - `current == l` and the target is pause: until the next frame start (S=1) of `l`,
//!   where `current` becomes none, so the last frame delivered is whole;
//! - `current != l`, the effective target is `l`, and the packet is the first of a key
//!   frame (S=1, I=1 in frame marking): `current` becomes `l` here and only here.
//!
//! The effective target is the highest layer at or below the subscriber's target that
//! the publisher sent within the last second ([`LAYER_ALIVE`]), so a publisher that drops
//! its top layer does not leave its subscribers frozen; with nothing seen yet it is the
//! target itself. A packet whose frame marking is missing or malformed is counted and
//! treated as no switch point: it still goes to whoever is on its layer.
//!
//! A publisher whose address changes may hash to another shard, which must not resume
//! from a state another shard has moved on from: every shard clears the layer state of a
//! publisher's tracks when its address changes ([`Selection::publisher_moved`]), so the
//! next packets wait for a key frame.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::counters::{DropReason, LocalCounters};
use crate::ext::{self, FrameMarking};
use crate::route::Transmit;
use crate::speaker::{Activity, Levels};
use crate::table::{ConfIdx, ConfRoutes, EpIdx, Table};

/// A subscriber's target layer meaning "subscribed, send nothing".
pub const PAUSED: u8 = u8::MAX;
/// `current` of a subscriber that gets no layer.
const NONE: u8 = u8::MAX;
/// Most simulcast layers one track may have.
pub const MAX_LAYERS: usize = 4;
/// A layer counts as sent while its last packet is this recent.
pub const LAYER_ALIVE: Duration = Duration::from_secs(1);

/// What the forwarder reads of one SSRC's packets beyond the fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Media {
    /// Nothing: every packet goes to every subscriber of the SSRC.
    #[default]
    Plain,
    /// Audio whose level extension feeds speaker detection; still fanned out to the
    /// SSRC's subscribers.
    Audio {
        /// Index in [`ConfRoutes::audio`].
        stream: u32,
        /// Extension id of the audio level.
        ext: u8,
    },
    /// One layer of a selectively forwarded video track.
    Video {
        /// Index in [`ConfRoutes::video`].
        track: u32,
        /// Which layer this SSRC carries (0 = lowest).
        layer: u8,
    },
}

/// One subscriber of a selective video track and the layer the model wants it to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelSub {
    /// The subscriber's endpoint slot.
    pub ep: EpIdx,
    /// The highest layer wanted, or [`PAUSED`].
    pub target: u8,
}

/// A selectively forwarded video track: its layers and its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRoute {
    /// Stable key across rebuilds (the lowest layer's SSRC), to carry state over.
    pub key: u32,
    /// The publisher.
    pub owner: EpIdx,
    /// Number of layers (SSRCs), 1..=[`MAX_LAYERS`].
    pub layers: u8,
    /// Extension id of frame marking.
    pub frame_marking: u8,
    /// Subscribers, each with its target.
    pub subs: Box<[SelSub]>,
    /// Where this track's subscriber states start in the shard's state array (set by
    /// the builder).
    pub state: u32,
}

impl VideoRoute {
    /// Whether `ep` subscribes and is not paused: it may ask the publisher for a key
    /// frame (PLI, FIR) of any of the track's layers.
    pub fn wants(&self, ep: EpIdx) -> bool {
        self.subs.iter().any(|s| s.ep == ep && s.target != PAUSED)
    }
}

/// An audio stream whose levels the shard reads for speaker detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioRoute {
    /// Stable key across rebuilds (its SSRC).
    pub key: u32,
    /// The publisher.
    pub owner: EpIdx,
    /// The publisher's slot generation, so a report about a reused slot is ignored.
    pub generation: u32,
}

#[derive(Debug, Clone)]
struct TrackState {
    /// When each layer's last packet arrived on this shard.
    seen: [Option<Instant>; MAX_LAYERS],
}

/// One conference's shard-local selection state, laid out to match its routes.
#[derive(Debug, Clone, Default)]
struct ConfState {
    /// Per (track, subscriber), at `VideoRoute::state + i`: the layer being sent.
    current: Box<[u8]>,
    tracks: Box<[TrackState]>,
    audio: Box<[Levels]>,
}

/// A shard's selection state for every conference it routes.
#[derive(Debug, Default)]
pub struct Selection {
    confs: Vec<Option<ConfState>>,
}

impl Selection {
    /// Lays the state of conference `conf` out for `new` routes, carrying over what
    /// `old` routes had for the same tracks, subscribers and audio streams. Runs when
    /// routes change, never per packet.
    pub fn on_routes(&mut self, conf: ConfIdx, old: Option<&ConfRoutes>, new: Option<&ConfRoutes>) {
        let i = conf as usize;
        if self.confs.len() <= i {
            self.confs.resize_with(i + 1, || None);
        }
        let Some(new) = new else {
            self.confs[i] = None;
            return;
        };
        if new.video.is_empty() && new.audio.is_empty() {
            self.confs[i] = None;
            return;
        }
        let prev = self.confs[i].take();
        let mut st = ConfState {
            current: vec![NONE; new.video.iter().map(|t| t.subs.len()).sum()].into(),
            tracks: vec![
                TrackState {
                    seen: [None; MAX_LAYERS]
                };
                new.video.len()
            ]
            .into(),
            audio: vec![Levels::default(); new.audio.len()].into(),
        };
        if let (Some(old), Some(prev)) = (old, prev) {
            let old_tracks: HashMap<u32, usize> = old
                .video
                .iter()
                .enumerate()
                .map(|(k, t)| (t.key, k))
                .collect();
            for (k, t) in new.video.iter().enumerate() {
                let Some(&ok) = old_tracks.get(&t.key) else {
                    continue;
                };
                let ot = &old.video[ok];
                if ot.owner != t.owner || ot.layers != t.layers {
                    continue;
                }
                if let Some(s) = prev.tracks.get(ok) {
                    st.tracks[k] = s.clone();
                }
                for (j, sub) in t.subs.iter().enumerate() {
                    if let Some(oj) = ot.subs.iter().position(|o| o.ep == sub.ep)
                        && let Some(&c) = prev.current.get(ot.state as usize + oj)
                    {
                        st.current[t.state as usize + j] = c;
                    }
                }
            }
            let old_audio: HashMap<u32, usize> = old
                .audio
                .iter()
                .enumerate()
                .map(|(k, a)| (a.key, k))
                .collect();
            for (k, a) in new.audio.iter().enumerate() {
                if let Some(&ok) = old_audio.get(&a.key)
                    && old.audio[ok].owner == a.owner
                    && let Some(l) = prev.audio.get(ok)
                {
                    st.audio[k] = l.clone();
                }
            }
        }
        self.confs[i] = Some(st);
    }

    /// Forgets which layer each subscriber gets of `ep`'s tracks in `routes`: its packets
    /// may now arrive at another shard, so every shard waits for a key frame again.
    pub fn publisher_moved(&mut self, conf: ConfIdx, ep: EpIdx, routes: &ConfRoutes) {
        let Some(Some(st)) = self.confs.get_mut(conf as usize) else {
            return;
        };
        for t in routes.video.iter().filter(|t| t.owner == ep) {
            let at = t.state as usize;
            if let Some(c) = st.current.get_mut(at..at + t.subs.len()) {
                c.fill(NONE);
            }
        }
    }

    /// Records the audio level of a packet of stream `stream` (its extension id `id`).
    /// Never stops the packet: a missing or malformed level is only counted.
    #[inline]
    pub fn audio_level(
        &mut self,
        conf: ConfIdx,
        stream: u32,
        id: u8,
        pkt: &[u8],
        now: Instant,
        counters: &mut LocalCounters,
    ) {
        let level = match ext::audio_level(pkt, id) {
            Ok(Some(l)) => l,
            Ok(None) => {
                counters.ext_missing += 1;
                return;
            }
            Err(_) => {
                counters.ext_malformed += 1;
                return;
            }
        };
        if let Some(Some(st)) = self.confs.get_mut(conf as usize)
            && let Some(l) = st.audio.get_mut(stream as usize)
        {
            let ts = pkt
                .get(4..8)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            l.on_level(level, ts, now);
        }
    }

    /// Routes one packet of layer `layer` of video track `track` (or, with `pkt` None, a
    /// sender report of that layer, which changes no state): pushes a transmit for every
    /// subscriber that gets it and returns how many.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn video(
        &mut self,
        conf: ConfIdx,
        routes: &ConfRoutes,
        track: u32,
        layer: u8,
        pkt: Option<&[u8]>,
        buf: u16,
        now: Instant,
        table: &Table,
        out: &mut Vec<Transmit>,
        counters: &mut LocalCounters,
    ) -> usize {
        let Some(t) = routes.video.get(track as usize) else {
            return 0;
        };
        let Some(Some(st)) = self.confs.get_mut(conf as usize) else {
            return 0;
        };
        let Some(ts) = st.tracks.get_mut(track as usize) else {
            return 0;
        };
        let at = t.state as usize;
        let Some(current) = st.current.get_mut(at..at + t.subs.len()) else {
            return 0;
        };
        let fm = match pkt {
            Some(p) => {
                let fm = match ext::frame_marking(p, t.frame_marking) {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        counters.ext_missing += 1;
                        FrameMarking::default()
                    }
                    Err(_) => {
                        counters.ext_malformed += 1;
                        FrameMarking::default()
                    }
                };
                if let Some(s) = ts.seen.get_mut(usize::from(layer)) {
                    *s = Some(now);
                }
                Some(fm)
            }
            None => None,
        };
        let alive = alive_layers(&ts.seen, t.layers, now);
        let mut n = 0;
        let mut missing = 0;
        for (sub, cur) in t.subs.iter().zip(current.iter_mut()) {
            let want = effective(sub.target, alive);
            let send = match fm {
                // A sender report goes wherever the layer goes now.
                None => *cur == layer,
                Some(fm) if *cur == layer => {
                    if want == PAUSED && fm.start {
                        *cur = NONE;
                        false
                    } else {
                        true
                    }
                }
                Some(fm) => {
                    if want == layer && fm.switch_point() {
                        *cur = layer;
                        counters.layer_switches += 1;
                        true
                    } else {
                        false
                    }
                }
            };
            if send {
                match table.slot(sub.ep).and_then(|s| s.dest(now)) {
                    Some(dst) => {
                        out.push(Transmit { buf, dst });
                        n += 1;
                    }
                    None => {
                        missing += 1;
                        // Not latched (yet, or any more): what it missed breaks the
                        // frames after it, so it starts over at a key frame.
                        if fm.is_some() {
                            *cur = NONE;
                        }
                    }
                }
            }
        }
        counters.drops[DropReason::NoDestination as usize] += missing;
        n
    }

    /// Reports of every audio stream with news at `now`: `(conference, route index,
    /// activity)`, handed to `f`.
    pub fn reports(&mut self, now: Instant, mut f: impl FnMut(ConfIdx, usize, Activity)) {
        for (c, st) in self.confs.iter_mut().enumerate() {
            let Some(st) = st else { continue };
            for (k, l) in st.audio.iter_mut().enumerate() {
                if let Some(a) = l.report(now) {
                    f(c as ConfIdx, k, a);
                }
            }
        }
    }

    /// The layer subscriber `ep` of video track `track` currently gets (for tests and
    /// the in-memory harness).
    pub fn current(&self, conf: ConfIdx, routes: &ConfRoutes, track: u32, ep: EpIdx) -> Option<u8> {
        let t = routes.video.get(track as usize)?;
        let j = t.subs.iter().position(|s| s.ep == ep)?;
        let st = self.confs.get(conf as usize)?.as_ref()?;
        let c = *st.current.get(t.state as usize + j)?;
        (c != NONE).then_some(c)
    }
}

/// Bit `l` set: layer `l` had a packet within [`LAYER_ALIVE`].
#[inline]
fn alive_layers(seen: &[Option<Instant>; MAX_LAYERS], layers: u8, now: Instant) -> u8 {
    let mut mask = 0u8;
    for (l, s) in seen.iter().enumerate().take(usize::from(layers)) {
        if s.is_some_and(|s| now.saturating_duration_since(s) < LAYER_ALIVE) {
            mask |= 1 << l;
        }
    }
    mask
}

/// The layer a subscriber should get: the highest alive layer at or below its target,
/// or the target itself when none is alive.
#[inline]
fn effective(target: u8, alive: u8) -> u8 {
    if target == PAUSED {
        return PAUSED;
    }
    let below = if target >= 7 {
        alive
    } else {
        alive & ((2u8 << target) - 1)
    };
    if below == 0 {
        target
    } else {
        7 - below.leading_zeros() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_layer_falls_back_to_what_is_sent() {
        assert_eq!(effective(2, 0b111), 2);
        assert_eq!(effective(2, 0b011), 1);
        assert_eq!(effective(1, 0b100), 1, "nothing at or below: the target");
        assert_eq!(effective(0, 0b111), 0);
        assert_eq!(effective(PAUSED, 0b111), PAUSED);
        assert_eq!(effective(9, 0b101), 2);
    }
}
