//! What a participant checks and decides about the video it receives under selective
//! forwarding: whether every frame it was handed could be decoded, which videos it should
//! be getting (the forwarder's last-N rule applied to the speaker events), how long each
//! stayed frozen, when to ask a publisher for a key frame, and which layer to ask for.
//!
//! Owns that bookkeeping only; sans-IO (times in ms are passed in), no keys, no sockets.
//! Must not decide for the forwarder: the expected set mirrors its documented rule so a
//! freeze can be told from a video the forwarder rightly does not send.
//!
//! # Decodability
//! A frame is decoded when all its packets arrived and it is a key frame, or it follows
//! the last frame the decoder decoded in the same layer. A complete frame that is neither
//! is *undecodable*: a forwarder handed this receiver a frame whose dependency it never
//! sent (a layer switch or a resume away from a key frame). Packet loss can break a
//! dependency too; a frame after a loss in its layer (a sequence gap of up to
//! [`LOSS_GAP`] packets within [`RUN_IDLE_MS`]) since that layer's last key frame is
//! counted as *lost*, not undecodable, so the check blames the forwarder only for what
//! the forwarder did.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::simulcast::FrameHeader;

/// A sequence gap up to this many packets within a run counts as loss, not as the
/// forwarder stopping and restarting the layer.
pub const LOSS_GAP: u16 = 64;
/// A layer silent this long has stopped (paused, switched away): the next packet starts
/// a new run.
pub const RUN_IDLE_MS: u64 = 300;
/// No decoded frame for this long, while the video should be coming, is a freeze.
pub const FREEZE_MS: u64 = 250;
/// Key frame requests for one video are repeated at most this often.
pub const PLI_EVERY_MS: u64 = 300;

/// Per-video counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VideoStats {
    /// Frames decoded.
    pub decoded: u64,
    /// Complete frames whose dependency the forwarder never delivered.
    pub undecodable: u64,
    /// Frames whose dependency was lost to packet loss.
    pub lost: u64,
    /// Frames that never completed.
    pub incomplete: u64,
    /// Layer changes seen by the decoder (it decoded a key frame of another layer).
    pub layer_changes: u64,
    /// Frames of the layer the decoder just left that completed after the switch (sent
    /// before it, reordered on the way): dropped, as a jitter buffer would.
    #[serde(default)]
    pub late: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    last_seq: u16,
    last_ms: u64,
    /// Loss seen in this layer since its last decoded key frame.
    lossy: bool,
}

/// One publisher's video as this receiver decodes it.
#[derive(Debug, Clone, Default)]
pub struct VideoRx {
    runs: HashMap<u8, Run>,
    /// Frames being assembled: (layer, frame) → (packets seen, count, key).
    partial: BTreeMap<(u8, u32), (u16, u16, bool)>,
    seen: HashMap<(u8, u32), u64>,
    /// The decoder: last decoded (layer, frame).
    decoder: Option<(u8, u32)>,
    /// The last frame decoded on each layer.
    last_on: HashMap<u8, u32>,
    /// When the last frame was decoded.
    pub last_decoded_ms: Option<u64>,
    /// Counters.
    pub stats: VideoStats,
}

impl VideoRx {
    /// One packet (decrypted, content checked) of this publisher's video: `seq` on its
    /// layer's SSRC, `h` its frame header. Returns whether it completed a frame that
    /// decoded.
    pub fn on_packet(&mut self, seq: u16, h: FrameHeader, now_ms: u64) -> bool {
        let run = self.runs.entry(h.layer).or_default();
        let gap = seq.wrapping_sub(run.last_seq);
        // A run already hurt by loss stays hurt across this receiver's own stalls (busy
        // with a group change while packets queued): the sequence says it continues.
        let continuing = run.last_ms != 0
            && (now_ms.saturating_sub(run.last_ms) < RUN_IDLE_MS || run.lossy)
            && (1..=LOSS_GAP).contains(&gap);
        if continuing && gap > 1 {
            run.lossy = true;
        }
        let starts_key = h.key && h.index == 0;
        if !continuing && !starts_key {
            // A new run that does not start at a key frame: no loss explains a missing
            // dependency here.
            run.lossy = false;
        }
        run.last_seq = seq;
        run.last_ms = now_ms.max(1);
        let key = (h.layer, h.frame);
        let bit = 1u64 << (h.index.min(63));
        let seen = self.seen.entry(key).or_default();
        if *seen & bit != 0 {
            return false;
        }
        *seen |= bit;
        let entry = self.partial.entry(key).or_insert((0, h.count, h.key));
        entry.0 += 1;
        if entry.0 < entry.1 {
            return false;
        }
        self.partial.remove(&key);
        self.seen.remove(&key);
        // Frames of this layer older than this one that never completed are given up.
        let stale: Vec<(u8, u32)> = self
            .partial
            .range((h.layer, 0)..(h.layer, h.frame))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.partial.remove(&k);
            self.seen.remove(&k);
            self.stats.incomplete += 1;
        }
        self.decode(h, now_ms)
    }

    /// A packet of layer `layer` (`seq` on its SSRC) this receiver could not open (no key
    /// for its epoch yet, as around a join): its frame is lost, not the forwarder's doing.
    pub fn on_unreadable(&mut self, seq: u16, layer: u8, now_ms: u64) {
        let run = self.runs.entry(layer).or_default();
        run.last_seq = seq;
        run.last_ms = now_ms.max(1);
        run.lossy = true;
    }

    /// When the last packet of any layer arrived.
    pub fn last_packet_ms(&self) -> Option<u64> {
        self.runs
            .values()
            .map(|r| r.last_ms)
            .filter(|&t| t > 0)
            .max()
    }

    fn decode(&mut self, h: FrameHeader, now_ms: u64) -> bool {
        let follows = self.decoder == Some((h.layer, h.frame.wrapping_sub(1)));
        if h.key || follows {
            if h.key && self.decoder.is_some_and(|(l, _)| l != h.layer) {
                self.stats.layer_changes += 1;
            }
            if h.key
                && let Some(run) = self.runs.get_mut(&h.layer)
            {
                run.lossy = false;
            }
            self.decoder = Some((h.layer, h.frame));
            self.last_on.insert(h.layer, h.frame);
            self.stats.decoded += 1;
            self.last_decoded_ms = Some(now_ms);
            return true;
        }
        if self
            .decoder
            .is_some_and(|(l, f)| l == h.layer && h.frame <= f)
        {
            // Late or repeated: the decoder is past it.
            return false;
        }
        if self.decoder.is_some_and(|(l, _)| l != h.layer)
            && self.last_on.get(&h.layer) == Some(&h.frame.wrapping_sub(1))
        {
            // The next frame of the layer just left: sent before the switch, it arrived
            // after the new layer's key frame. Nothing the forwarder did wrong.
            self.stats.late += 1;
            return false;
        }
        if self.runs.get(&h.layer).is_some_and(|r| r.lossy) {
            self.stats.lost += 1;
        } else {
            self.stats.undecodable += 1;
        }
        false
    }

    /// The layer the decoder is on.
    pub fn layer(&self) -> Option<u8> {
        self.decoder.map(|(l, _)| l)
    }
}

/// The videos a receiver should be getting, by the forwarder's documented rule: every
/// pin, plus the first `last_n` of the speaker recency list that publish selective video,
/// itself excluded; everything when there is no last-N.
pub fn expected<'a>(
    me: &str,
    last_n: Option<u32>,
    pins: &'a [String],
    recent: &'a [String],
    publishes_video: impl Fn(&str) -> bool,
) -> HashSet<&'a str> {
    let mut set: HashSet<&str> = pins.iter().map(String::as_str).collect();
    let order = recent
        .iter()
        .map(String::as_str)
        .filter(|p| *p != me && publishes_video(p));
    match last_n {
        Some(n) => set.extend(order.take(n as usize)),
        None => set.extend(order),
    }
    set
}

/// Freeze accounting for one video the receiver should be getting.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Since when it should be coming.
    pub since_ms: u64,
    /// When the current freeze began, if it is frozen now.
    frozen_since: Option<u64>,
    /// When the last key frame request went out.
    pub last_pli_ms: Option<u64>,
    /// Whether the first frame since `since_ms` has been decoded.
    pub started: bool,
    /// Ask for a key frame at the next check whatever the video does (a new layer).
    pub force: bool,
}

/// Freeze counters over every expected video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FreezeStats {
    /// Freezes (a gap of at least [`FREEZE_MS`] without a decoded frame) after a video
    /// had started.
    pub freezes: u64,
    /// Their total length.
    pub frozen_ms: u64,
    /// The longest.
    pub max_freeze_ms: u64,
}

impl Watch {
    /// Starts watching at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            since_ms: now_ms,
            ..Self::default()
        }
    }

    /// Updates the freeze state at `now_ms` given when the video last decoded a frame;
    /// returns whether a key frame should be asked for now (nothing decoded for a while,
    /// and no request in the last [`PLI_EVERY_MS`]).
    pub fn check(
        &mut self,
        last_decoded_ms: Option<u64>,
        now_ms: u64,
        stats: &mut FreezeStats,
    ) -> bool {
        let last = last_decoded_ms.filter(|&t| t >= self.since_ms);
        if last.is_some() {
            self.started = true;
        }
        let quiet_since = last.unwrap_or(self.since_ms);
        let quiet = now_ms.saturating_sub(quiet_since);
        if self.started {
            match (quiet >= FREEZE_MS, self.frozen_since) {
                (true, None) => self.frozen_since = Some(quiet_since),
                (false, Some(from)) => {
                    let len = quiet_since.saturating_sub(from);
                    stats.freezes += 1;
                    stats.frozen_ms += len;
                    stats.max_freeze_ms = stats.max_freeze_ms.max(len);
                    self.frozen_since = None;
                }
                _ => {}
            }
        }
        let want_key = self.force || quiet >= PLI_EVERY_MS.min(FREEZE_MS) || !self.started;
        if want_key
            && self
                .last_pli_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= PLI_EVERY_MS)
        {
            self.last_pli_ms = Some(now_ms);
            self.force = false;
            return true;
        }
        false
    }
}

/// Picks the layer to ask for from the video bytes received against a download budget:
/// down a layer as soon as a window's rate is over the budget, up a layer after
/// [`UP_AFTER_MS`] of using less than a third of it (the next layer up costs about three
/// times as much).
#[derive(Debug, Clone)]
pub struct LayerChooser {
    budget_bps: u64,
    layer: u8,
    top: u8,
    window_start: Option<u64>,
    bytes: u64,
    calm_since: Option<u64>,
}

/// Length of one measurement window.
pub const WINDOW_MS: u64 = 1000;
/// How long the rate must stay low before moving up.
pub const UP_AFTER_MS: u64 = 3000;

impl LayerChooser {
    /// Starts at `top` with a budget of `budget_bps` for all video.
    pub fn new(budget_bps: u64, top: u8) -> Self {
        Self {
            budget_bps,
            layer: top,
            top,
            window_start: None,
            bytes: 0,
            calm_since: None,
        }
    }

    /// The layer to ask for.
    pub fn layer(&self) -> u8 {
        self.layer
    }

    /// Counts `len` video bytes received at `now_ms`; returns the new layer when it
    /// changes.
    pub fn on_bytes(&mut self, len: usize, now_ms: u64) -> Option<u8> {
        let start = *self.window_start.get_or_insert(now_ms);
        self.bytes += len as u64;
        if now_ms.saturating_sub(start) < WINDOW_MS {
            return None;
        }
        let rate = self.bytes * 8 * 1000 / now_ms.saturating_sub(start).max(1);
        self.window_start = Some(now_ms);
        self.bytes = 0;
        if rate > self.budget_bps && self.layer > 0 {
            self.layer -= 1;
            self.calm_since = None;
            return Some(self.layer);
        }
        if rate * 3 < self.budget_bps && self.layer < self.top {
            let since = *self.calm_since.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= UP_AFTER_MS {
                self.layer += 1;
                self.calm_since = None;
                return Some(self.layer);
            }
        } else {
            self.calm_since = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(layer: u8, key: bool, frame: u32, index: u16, count: u16) -> FrameHeader {
        FrameHeader {
            layer,
            key,
            frame,
            index,
            count,
        }
    }

    /// Feeds whole frames of (layer, key, frame) with 2 packets each, sequence numbers
    /// per layer continuing from `seq`.
    fn feed(rx: &mut VideoRx, frames: &[(u8, bool, u32)], seq: &mut [u16; 3], t: &mut u64) {
        for &(l, k, f) in frames {
            for i in 0..2 {
                rx.on_packet(seq[l as usize], h(l, k, f, i, 2), *t);
                seq[l as usize] += 1;
            }
            *t += 33;
        }
    }

    #[test]
    fn a_clean_switch_at_a_key_frame_decodes_everything() {
        let mut rx = VideoRx::default();
        let (mut seq, mut t) = ([100, 200, 300], 1);
        feed(
            &mut rx,
            &[(2, true, 0), (2, false, 1), (2, false, 2)],
            &mut seq,
            &mut t,
        );
        feed(&mut rx, &[(0, true, 7), (0, false, 8)], &mut seq, &mut t);
        assert_eq!(rx.stats.decoded, 5);
        assert_eq!(rx.stats.undecodable, 0);
        assert_eq!(rx.stats.layer_changes, 1);
        assert_eq!(rx.layer(), Some(0));
    }

    #[test]
    fn a_switch_to_a_delta_frame_is_caught() {
        let mut rx = VideoRx::default();
        let (mut seq, mut t) = ([100, 200, 300], 1);
        feed(&mut rx, &[(2, true, 0), (2, false, 1)], &mut seq, &mut t);
        // Layer 0 handed over mid-stream: every frame until its next key is undecodable.
        feed(
            &mut rx,
            &[(0, false, 8), (0, false, 9), (0, true, 10)],
            &mut seq,
            &mut t,
        );
        assert_eq!(rx.stats.undecodable, 2);
        assert_eq!(rx.stats.decoded, 3);
        // Resuming a layer after a pause at a delta frame, likewise.
        t += 1000;
        seq[0] += 30;
        feed(&mut rx, &[(0, false, 40)], &mut seq, &mut t);
        assert_eq!(rx.stats.undecodable, 3);
    }

    #[test]
    fn loss_is_not_blamed_on_the_forwarder() {
        let mut rx = VideoRx::default();
        let (mut seq, mut t) = ([100, 200, 300], 1);
        feed(&mut rx, &[(1, true, 0)], &mut seq, &mut t);
        // Frame 1's second packet is lost: frame 1 never completes, frame 2 depends on it.
        rx.on_packet(seq[1], h(1, false, 1, 0, 2), t);
        seq[1] += 2;
        t += 33;
        feed(&mut rx, &[(1, false, 2)], &mut seq, &mut t);
        assert_eq!((rx.stats.lost, rx.stats.undecodable), (1, 0));
        assert_eq!(rx.stats.incomplete, 1);
        feed(&mut rx, &[(1, true, 3), (1, false, 4)], &mut seq, &mut t);
        assert_eq!(rx.stats.decoded, 3);
    }

    #[test]
    fn expected_follows_last_n_and_pins() {
        let recent: Vec<String> = ["c", "me", "a", "b", "d"].map(String::from).to_vec();
        let pins = vec!["d".to_string()];
        let got = expected("me", Some(2), &pins, &recent, |p| p != "a");
        assert_eq!(got, HashSet::from(["c", "b", "d"]));
        let all = expected("me", None, &[], &recent, |_| true);
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn freezes_are_measured_and_key_frames_asked_for() {
        let mut w = Watch::new(1000);
        let mut s = FreezeStats::default();
        assert!(w.check(None, 1000, &mut s), "ask at once");
        assert!(!w.check(None, 1100, &mut s));
        assert!(w.check(None, 1300, &mut s), "asked again after 300 ms");
        assert!(!w.check(Some(1350), 1360, &mut s));
        assert!(w.started);
        // 500 ms without a frame, then frames again: one freeze of 500 ms.
        assert!(w.check(Some(1400), 1700, &mut s));
        assert!(!w.check(Some(1900), 1910, &mut s));
        assert_eq!((s.freezes, s.max_freeze_ms), (1, 500));
    }

    #[test]
    fn the_chooser_steps_down_fast_and_up_slowly() {
        let mut c = LayerChooser::new(1_000_000, 2);
        // 2 Mbit/s for a second: down.
        for i in 0..=10 {
            if let Some(l) = c.on_bytes(25_000, i * 100) {
                assert_eq!(l, 1);
            }
        }
        assert_eq!(c.layer(), 1);
        // 200 kbit/s: up again only after three calm seconds.
        let mut ups = Vec::new();
        for i in 11..=60 {
            if let Some(l) = c.on_bytes(2_500, i * 100) {
                ups.push((i * 100, l));
            }
        }
        assert_eq!(ups.len(), 1);
        assert!(ups[0].0 >= 1000 + UP_AFTER_MS, "{ups:?}");
    }

    #[test]
    fn one_straggler_of_the_old_layer_is_late_a_second_is_undecodable() {
        let f = |layer, key, frame| FrameHeader {
            layer,
            key,
            frame,
            index: 0,
            count: 1,
        };
        let mut rx = VideoRx::default();
        assert!(rx.on_packet(10, f(2, true, 0), 1));
        assert!(rx.on_packet(11, f(2, false, 1), 34));
        assert!(rx.on_packet(500, f(1, true, 7), 40));
        // Frame 2 of layer 2 was sent before the switch and arrives after it.
        assert!(!rx.on_packet(12, f(2, false, 2), 41));
        assert_eq!((rx.stats.late, rx.stats.undecodable), (1, 0));
        // A forwarder still sending the old layer is caught at its next frame.
        assert!(!rx.on_packet(13, f(2, false, 3), 70));
        assert_eq!((rx.stats.late, rx.stats.undecodable), (1, 1));
    }

    #[test]
    fn an_unreadable_packet_then_a_stall_is_loss_not_the_forwarder() {
        let f = |frame, key| FrameHeader {
            layer: 2,
            key,
            frame,
            index: 0,
            count: 1,
        };
        let mut rx = VideoRx::default();
        assert!(rx.on_packet(1, f(0, true), 1));
        // Frame 1 could not be opened (its epoch's key came later)...
        rx.on_unreadable(2, 2, 30);
        // ...and the receiver was busy for 400 ms with the group change.
        assert!(!rx.on_packet(3, f(2, false), 430));
        assert_eq!((rx.stats.lost, rx.stats.undecodable), (1, 0));
        // Without the unreadable packet the same gap after a pause is the forwarder's.
        let mut rx = VideoRx::default();
        assert!(rx.on_packet(1, f(0, true), 1));
        assert!(!rx.on_packet(3, f(2, false), 430));
        assert_eq!((rx.stats.lost, rx.stats.undecodable), (0, 1));
    }
}
