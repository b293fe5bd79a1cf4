//! Active speaker detection from RFC 6464 audio levels, in two halves: [`Levels`], the
//! per-stream history a shard keeps as packets arrive, and [`Detector`], the
//! per-conference decision the control thread makes from the shards' reports.
//!
//! Owns the algorithm only; sans-IO (time is an argument), no allocation per packet, no
//! knowledge of ids, routes or sockets.
//!
//! # The algorithm
//! Dominant speaker identification after Volfin and Cohen ("Dominant Speaker
//! Identification for Multipoint Videoconferencing"), as Jitsi's videobridge implements it
//! (`DominantSpeakerIdentification`), with its constants, plus one guard of our own:
//!
//! 1. **Levels** (per stream, on the shard that receives it). Each packet's level becomes
//!    a loudness `127 - dBov` in a 1 s history of 20 ms slots; a slot without a packet
//!    (muted, DTX, loss) counts as silence. Slots follow the sender's clock (the RTP
//!    timestamp, 48 kHz for Opus), not arrival times, so network or scheduling jitter
//!    never reads as silence; only a stream with no packet for [`LEVEL_IDLE`] turns
//!    silent by the wall clock. (Jitsi slots by arrival with a 40 ms idle timeout: one
//!    packet 20 ms late there empties a whole 100 ms block of the long scale.) A per-stream noise floor (the minimum level
//!    seen, raised slowly: the geometric mean with the minimum of the last 15 s) is
//!    subtracted, so a noisy room and a quiet one compete on equal terms.
//! 2. **Three time scales** (smoothing). The newest slot, quantised into 13 sub-bands,
//!    gives the *immediate* activity (0..=12); the newest 100 ms block counts its slots
//!    above sub-band 7 (*medium*, 0..=5); the whole second counts its blocks with all five
//!    slots loud (*long*, 0..=10). A shard reports these three counts per stream every
//!    100 ms ([`REPORT_EVERY`]); that is all that leaves it.
//! 3. **Scores.** Each count becomes a speech activity score: the log-likelihood of that
//!    many active units out of the interval's units under a binomial model against an
//!    exponential prior, `ln C(n, v) + v ln p + (n - v) ln(1 - p) - ln λ + λ v` with
//!    p = 0.5 and λ = 0.78, 24, 47 for the three scales, floored at 1e-10.
//! 4. **Decision** (hysteresis), per conference every 300 ms ([`DECIDE_EVERY`]): a
//!    challenger takes the floor from the dominant speaker only if its scores exceed the
//!    dominant's on all three scales at once, by factors of e^3 (immediate), e^2 (medium)
//!    and e^0 (long); among several challengers the largest medium ratio wins. In
//!    practice the dominant speaker keeps the floor while it talks and loses it only
//!    after a pause of at least 100 ms to someone with more sustained speech over the
//!    last second.
//! 5. **Guard** (ours): a challenger needs a long count of at least [`MIN_LONG`] (300 ms
//!    of loud speech within the last second), so a cough, a door or a laugh into a
//!    silent room never takes the floor. Jitsi would switch on those.
//!
//! A clean turn (A stops, B starts) is detected once B's sustained speech over the last
//! second outweighs A's fading one: about 0.5–0.9 s after B starts, depending on where
//! the decision ticks fall (`tests/speaker_detection.rs` measures it).

use std::time::{Duration, Instant};

use crate::ext::AudioLevel;

/// One level slot: the packet time of Opus at 20 ms.
pub const SLOT: Duration = Duration::from_millis(20);
/// How often a shard reports the activity of its streams.
pub const REPORT_EVERY: Duration = Duration::from_millis(100);
/// How often the control thread decides who the dominant speaker is.
pub const DECIDE_EVERY: Duration = Duration::from_millis(300);
/// Reports older than this count as silence (the stream's shard stopped reporting it).
pub const REPORT_STALE: Duration = Duration::from_millis(1500);
/// Least long-term count a challenger needs to take the floor (see the module doc).
pub const MIN_LONG: u8 = 3;

const MAX_LEVEL: u8 = 127;
/// Sub-bands of the immediate scale.
const N1: u8 = 13;
/// Width of one sub-band in loudness units.
const N1_SUBUNIT: u8 = MAX_LEVEL.div_ceil(N1);
/// Slots per medium block.
const N2: usize = 5;
/// Medium blocks per long interval.
const N3: usize = 10;
/// Slots in the history: one long interval.
const HISTORY: usize = N2 * N3;
/// A slot counts toward the medium scale above this sub-band.
const MEDIUM_THRESHOLD: u8 = 7;
/// A medium block counts toward the long scale above this many active slots.
const LONG_THRESHOLD: u8 = 4;
/// Slots over which a rising noise floor is re-estimated (15 s).
const MIN_LEVEL_WINDOW: u16 = 750;
/// A stream with no packet for this long is silent from its last packet on (by the wall
/// clock: the sender stopped, DTX, loss). Long enough that jitter does not count.
pub const LEVEL_IDLE: Duration = Duration::from_millis(200);
/// RTP clock ticks per slot: Opus's RTP clock is 48 kHz whatever it samples at (RFC 7587).
pub const SLOT_TICKS: u32 = 960;

/// The three counts a shard reports for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Activity {
    /// Sub-band of the newest slot above the noise floor, 0..=12.
    pub immediate: u8,
    /// Loud slots in the newest 100 ms block, 0..=5.
    pub medium: u8,
    /// Fully loud blocks in the last second, 0..=10.
    pub long: u8,
}

impl Activity {
    /// Nothing heard.
    pub const SILENT: Self = Self {
        immediate: 0,
        medium: 0,
        long: 0,
    };

    /// Whether any scale shows activity.
    pub fn is_active(&self) -> bool {
        *self != Self::SILENT
    }

    fn clamped(self) -> Self {
        Self {
            immediate: self.immediate.min(N1 - 1),
            medium: self.medium.min(N2 as u8),
            long: self.long.min(N3 as u8),
        }
    }
}

/// One stream's level history, kept by the shard that receives the stream.
#[derive(Debug, Clone)]
pub struct Levels {
    /// Loudness per slot (`127 - dBov`), newest at `head`.
    ring: [u8; HISTORY],
    head: usize,
    /// When the newest packet arrived (or the wall-clock fill reached).
    last: Option<Instant>,
    /// The RTP timestamp of the newest slot.
    last_ts: u32,
    /// The newest slots are silence the wall clock filled in (no packet for
    /// [`LEVEL_IDLE`]), not the sender's.
    filled: bool,
    min_level: u8,
    next_min: u8,
    next_window: u16,
    /// Something changed since the last report, or the last report was not silent.
    dirty: bool,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            ring: [0; HISTORY],
            head: 0,
            last: None,
            last_ts: 0,
            filled: false,
            min_level: 0,
            next_min: 0,
            next_window: 0,
            dirty: false,
        }
    }
}

impl Levels {
    /// Records one packet's level: `ts` its RTP timestamp, `now` its arrival. The
    /// voice-activity flag is not used: it is optional in RFC 6464 and senders without a
    /// detector leave it clear. A packet at or before the newest slot (duplicate or
    /// reordered) changes nothing; after a wall-clock fill, the sender's clock is taken
    /// up again from its next packet.
    #[inline]
    pub fn on_level(&mut self, level: AudioLevel, ts: u32, now: Instant) {
        self.fill_silence(now);
        if self.last.is_some() {
            let d = ts.wrapping_sub(self.last_ts);
            let behind = d == 0 || d > i32::MAX as u32;
            if behind && !self.filled {
                return;
            }
            let d = if behind { SLOT_TICKS } else { d };
            // Slots the sender's clock says passed without a packet: lost or not sent.
            let missed = (d / SLOT_TICKS).saturating_sub(1).min(HISTORY as u32);
            for _ in 0..missed {
                self.push(0);
            }
        }
        let loudness = MAX_LEVEL - level.dbov.min(MAX_LEVEL);
        self.push(loudness);
        self.update_min(loudness);
        self.last = Some(now);
        self.last_ts = ts;
        self.filled = false;
        self.dirty = true;
    }

    /// A stream silent for [`LEVEL_IDLE`]: the slots since its last packet become silence,
    /// up to a whole history, and its clock moves on with them.
    fn fill_silence(&mut self, now: Instant) {
        let Some(last) = self.last else { return };
        let idle = now.saturating_duration_since(last);
        if idle < LEVEL_IDLE {
            return;
        }
        let missed = (idle.as_millis() / SLOT.as_millis()).saturating_sub(1);
        let missed = missed.min(HISTORY as u128) as u32;
        for _ in 0..missed {
            self.push(0);
        }
        self.last = Some(last + SLOT * missed);
        self.last_ts = self.last_ts.wrapping_add(SLOT_TICKS * missed);
        self.filled |= missed > 0;
        self.dirty |= missed > 0;
    }

    fn push(&mut self, loudness: u8) {
        self.head = (self.head + 1) % HISTORY;
        self.ring[self.head] = loudness;
    }

    /// Slot `i` back from the newest (0 = newest).
    fn back(&self, i: usize) -> u8 {
        self.ring[(self.head + HISTORY - i) % HISTORY]
    }

    fn update_min(&mut self, level: u8) {
        if level == 0 {
            return;
        }
        if self.min_level == 0 || self.min_level > level {
            self.min_level = level;
            self.next_min = 0;
            self.next_window = 0;
        } else if self.next_min == 0 {
            self.next_min = level;
            self.next_window = 1;
        } else {
            self.next_min = self.next_min.min(level);
            self.next_window += 1;
            if self.next_window >= MIN_LEVEL_WINDOW {
                // A geometric mean raises the floor slowly, as the minimum it tracks
                // should move.
                let m = (f64::from(self.min_level) * f64::from(self.next_min)).sqrt();
                self.min_level = m.clamp(0.0, f64::from(MAX_LEVEL)) as u8;
                self.next_min = 0;
                self.next_window = 0;
            }
        }
    }

    /// The sub-band of slot `i` back, after removing the noise floor.
    fn immediate(&self, i: usize) -> u8 {
        let level = self.back(i);
        let floor = self.min_level.saturating_add(N1_SUBUNIT);
        if level < floor { 0 } else { level / N1_SUBUNIT }
    }

    /// The stream's activity at `now` (silence filled in up to `now`).
    pub fn activity(&mut self, now: Instant) -> Activity {
        self.fill_silence(now);
        let medium_of = |b: usize| -> u8 {
            (0..N2)
                .filter(|&s| self.immediate(b * N2 + s) > MEDIUM_THRESHOLD)
                .count() as u8
        };
        let long = (0..N3).filter(|&b| medium_of(b) > LONG_THRESHOLD).count() as u8;
        Activity {
            immediate: self.immediate(0),
            medium: medium_of(0),
            long,
        }
    }

    /// The activity to report at `now`, if there is news: the stream changed since the
    /// last report, or it is still fading (a silent stream is reported once, then not
    /// again until it makes a sound).
    pub fn report(&mut self, now: Instant) -> Option<Activity> {
        if !self.dirty {
            return None;
        }
        let a = self.activity(now);
        self.dirty = a.is_active();
        Some(a)
    }
}

/// Speech activity score of `v` active units out of `n` (see the module doc).
fn score(v: u8, n: u8, lambda: f64) -> f64 {
    const P: f64 = 0.5;
    let (v, n) = (u32::from(v.min(n)), u32::from(n));
    let mut ln_binomial = 0.0;
    for i in 0..v {
        ln_binomial += f64::from(n - i).ln() - f64::from(i + 1).ln();
    }
    let s = ln_binomial + f64::from(v) * P.ln() + f64::from(n - v) * (1.0 - P).ln() - lambda.ln()
        + lambda * f64::from(v);
    s.max(1e-10)
}

/// The three scores of an activity report.
fn scores(a: Activity) -> [f64; 3] {
    [
        score(a.immediate, N1, 0.78),
        score(a.medium, N2 as u8, 24.0),
        score(a.long, N3 as u8, 47.0),
    ]
}

/// Thresholds of the relative activities (ln of score ratios) a challenger must pass.
const C: [f64; 3] = [3.0, 2.0, 0.0];

/// One conference's dominant-speaker decision, on the control thread. Speakers are keyed
/// by whatever the caller uses (endpoint slots).
#[derive(Debug, Clone)]
pub struct Detector<K> {
    speakers: Vec<(K, Activity, Instant)>,
    dominant: Option<K>,
}

impl<K> Default for Detector<K> {
    fn default() -> Self {
        Self {
            speakers: Vec::new(),
            dominant: None,
        }
    }
}

impl<K: Copy + PartialEq> Detector<K> {
    /// Records a shard's report for speaker `k` at `now`.
    pub fn report(&mut self, k: K, activity: Activity, now: Instant) {
        let activity = activity.clamped();
        match self.speakers.iter_mut().find(|(s, _, _)| *s == k) {
            Some(e) => {
                e.1 = activity;
                e.2 = now;
            }
            None => self.speakers.push((k, activity, now)),
        }
    }

    /// Forgets speaker `k` (it left); if it held the floor, nobody does until the next
    /// decision.
    pub fn remove(&mut self, k: K) {
        self.speakers.retain(|(s, _, _)| *s != k);
        if self.dominant == Some(k) {
            self.dominant = None;
        }
    }

    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<K> {
        self.dominant
    }

    /// The latest activity of `k` at `now` (silence when stale or unknown).
    pub fn activity(&self, k: K, now: Instant) -> Activity {
        self.speakers
            .iter()
            .find(|(s, _, _)| *s == k)
            .map_or(Activity::SILENT, |&(_, a, at)| fresh(a, at, now))
    }

    /// Decides at `now`; returns the new dominant speaker when it changed.
    pub fn decide(&mut self, now: Instant) -> Option<K> {
        let current = self
            .dominant
            .and_then(|d| self.speakers.iter().find(|(s, _, _)| *s == d));
        let new = match current {
            None => {
                // Nobody holds the floor: the most active speaker with sustained speech
                // takes it.
                self.speakers
                    .iter()
                    .map(|&(k, a, at)| (k, fresh(a, at, now)))
                    .filter(|(_, a)| a.long >= MIN_LONG)
                    .max_by_key(|(_, a)| (a.long, a.medium, a.immediate))
                    .map(|(k, _)| k)
            }
            Some(&(d, da, dat)) => {
                let ds = scores(fresh(da, dat, now));
                let mut best: Option<(K, f64)> = None;
                for &(k, a, at) in &self.speakers {
                    if k == d {
                        continue;
                    }
                    let a = fresh(a, at, now);
                    if a.long < MIN_LONG {
                        continue;
                    }
                    let s = scores(a);
                    let rel = [
                        (s[0] / ds[0]).ln(),
                        (s[1] / ds[1]).ln(),
                        (s[2] / ds[2]).ln(),
                    ];
                    if rel.iter().zip(C).all(|(r, c)| *r > c)
                        && best.is_none_or(|(_, b)| rel[1] > b)
                    {
                        best = Some((k, rel[1]));
                    }
                }
                best.map(|(k, _)| k)
            }
        };
        match new {
            Some(k) if self.dominant != Some(k) => {
                self.dominant = Some(k);
                Some(k)
            }
            _ => None,
        }
    }
}

fn fresh(a: Activity, at: Instant, now: Instant) -> Activity {
    if now.saturating_duration_since(at) > REPORT_STALE {
        Activity::SILENT
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(dbov: u8) -> AudioLevel {
        AudioLevel { dbov, voice: true }
    }

    /// Wall clock and the sender's RTP clock.
    struct Clock {
        t: Instant,
        ts: u32,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                t: Instant::now(),
                ts: 0x1234_5678,
            }
        }
    }

    /// Feeds `ms` of packets every 20 ms at `dbov`, each arriving on time.
    fn feed(l: &mut Levels, c: &mut Clock, ms: u64, dbov: u8) {
        for _ in 0..ms / 20 {
            c.t += SLOT;
            c.ts = c.ts.wrapping_add(SLOT_TICKS);
            l.on_level(level(dbov), c.ts, c.t);
        }
    }

    #[test]
    fn scores_follow_the_reference_shape() {
        assert_eq!(score(0, 10, 47.0), 1e-10, "silence floors");
        assert!((score(1, 10, 47.0) - 38.5).abs() < 0.1);
        assert!(score(5, 5, 24.0) > score(1, 5, 24.0));
        assert!(score(12, 13, 0.78) > 1.0);
    }

    #[test]
    fn speech_fills_all_three_scales_and_silence_empties_them() {
        let mut c = Clock::new();
        let mut l = Levels::default();
        // A noise floor first, so speech stands out of it.
        feed(&mut l, &mut c, 400, 90);
        assert_eq!(l.activity(c.t), Activity::SILENT);
        feed(&mut l, &mut c, 1000, 20);
        let a = l.activity(c.t);
        assert!(a.immediate >= 9 && a.medium == 5 && a.long == 10, "{a:?}");
        // Packets stop: after the idle time, the slots they would have filled are silence.
        c.t += LEVEL_IDLE / 2;
        assert_eq!(l.activity(c.t), a, "jitter, not yet silence");
        c.t += LEVEL_IDLE;
        let a = l.activity(c.t);
        assert_eq!((a.immediate, a.medium), (0, 0), "{a:?}");
        assert!(a.long >= 6, "{a:?}");
        c.t += Duration::from_millis(1000);
        assert_eq!(l.activity(c.t), Activity::SILENT);
    }

    #[test]
    fn jitter_is_not_silence_but_a_sender_clock_gap_is() {
        let mut c = Clock::new();
        let mut l = Levels::default();
        feed(&mut l, &mut c, 400, 90);
        // A second of speech arriving in bursts: five packets at once every 100 ms (a
        // scheduler or a network holding them back). By arrival time, each burst follows
        // 80 ms without a packet.
        for _ in 0..10 {
            c.t += Duration::from_millis(100);
            for _ in 0..5 {
                c.ts = c.ts.wrapping_add(SLOT_TICKS);
                l.on_level(level(20), c.ts, c.t);
            }
        }
        let a = l.activity(c.t);
        assert_eq!((a.medium, a.long), (5, 10), "{a:?}");
        // A duplicate and a reordered packet change nothing.
        l.on_level(level(20), c.ts, c.t);
        l.on_level(level(90), c.ts.wrapping_sub(SLOT_TICKS), c.t);
        assert_eq!(l.activity(c.t), a);
        // Two packets the sender's clock says are missing (lost) are two silent slots.
        c.ts = c.ts.wrapping_add(3 * SLOT_TICKS);
        c.t += Duration::from_millis(60);
        l.on_level(level(20), c.ts, c.t);
        let a = l.activity(c.t);
        assert_eq!(a.medium, 3, "{a:?}");
        // A stall longer than the idle time is silence; the sender's packets count again
        // as soon as they flow, on whatever clock they resume.
        c.t += LEVEL_IDLE * 2;
        assert_eq!(l.activity(c.t).medium, 0);
        feed(&mut l, &mut c, 200, 20);
        let a = l.activity(c.t);
        assert_eq!(a.medium, 5, "{a:?}");
    }

    #[test]
    fn reports_only_news() {
        let mut c = Clock::new();
        let mut l = Levels::default();
        assert_eq!(l.report(c.t), None, "never heard: nothing to say");
        feed(&mut l, &mut c, 200, 90);
        assert_eq!(
            l.report(c.t),
            Some(Activity::SILENT),
            "silence is said once"
        );
        c.t += REPORT_EVERY;
        assert_eq!(l.report(c.t), None);
        feed(&mut l, &mut c, 600, 15);
        let mut t = c.t;
        assert!(l.report(t).is_some_and(|a| a.is_active()));
        // Still fading after it stopped: reported until silent, then not again.
        let mut reports = 0;
        for _ in 0..20 {
            t += REPORT_EVERY;
            if let Some(a) = l.report(t) {
                reports += 1;
                if !a.is_active() {
                    break;
                }
            }
        }
        assert!((5..=12).contains(&reports), "{reports}");
        t += REPORT_EVERY;
        assert_eq!(l.report(t), None);
    }

    #[test]
    fn the_noise_floor_levels_a_noisy_room() {
        let mut c = Clock::new();
        let mut noisy = Levels::default();
        // A constant -45 dBov hum is the floor, not speech.
        feed(&mut noisy, &mut c, 2000, 45);
        assert_eq!(noisy.activity(c.t).long, 0);
        feed(&mut noisy, &mut c, 1000, 10);
        assert!(noisy.activity(c.t).long >= 8);
    }

    #[test]
    fn a_talker_keeps_the_floor_and_a_pause_hands_it_over() {
        let t0 = Instant::now();
        let mut d: Detector<u32> = Detector::default();
        let loud = Activity {
            immediate: 10,
            medium: 5,
            long: 10,
        };
        d.report(1, loud, t0);
        d.report(2, loud, t0);
        assert!(d.decide(t0).is_some());
        let first = d.dominant().unwrap();
        let other = 3 - first;
        // Both talking: no switch.
        assert_eq!(d.decide(t0 + DECIDE_EVERY), None);
        // The dominant pauses; the other has talked for a while.
        d.report(
            first,
            Activity {
                immediate: 0,
                medium: 0,
                long: 4,
            },
            t0 + DECIDE_EVERY,
        );
        assert_eq!(d.decide(t0 + DECIDE_EVERY * 2), Some(other));
        assert_eq!(d.dominant(), Some(other));
    }

    #[test]
    fn a_cough_into_silence_never_takes_the_floor() {
        let t0 = Instant::now();
        let mut d: Detector<u32> = Detector::default();
        d.report(
            1,
            Activity {
                immediate: 10,
                medium: 5,
                long: 10,
            },
            t0,
        );
        assert_eq!(d.decide(t0), Some(1));
        // 1 goes quiet, 2 coughs: loud now, two loud blocks.
        d.report(1, Activity::SILENT, t0 + DECIDE_EVERY);
        let cough = Activity {
            immediate: 11,
            medium: 5,
            long: 2,
        };
        d.report(2, cough, t0 + DECIDE_EVERY);
        assert_eq!(d.decide(t0 + DECIDE_EVERY), None);
        // Sustained speech does.
        d.report(
            2,
            Activity {
                long: MIN_LONG,
                ..cough
            },
            t0 + DECIDE_EVERY * 2,
        );
        assert_eq!(d.decide(t0 + DECIDE_EVERY * 2), Some(2));
        // Stale reports are silence; a leaver loses the floor.
        assert_eq!(
            d.activity(2, t0 + Duration::from_secs(10)),
            Activity::SILENT
        );
        d.remove(2);
        assert_eq!(d.dominant(), None);
    }
}
