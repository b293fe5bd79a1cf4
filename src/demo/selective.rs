//! The demo's speaking-turns script for selective forwarding (`blindfold demo --last-n N`)
//! and its checks: speakers take turns; each receiver should get at most N videos, follow
//! the speaker, never be handed an undecodable frame, and still get every audio stream.
//!
//! Owns the script's timing, what it samples from the participants while it runs and the
//! pass/fail rules; each check also runs a control that shows it can fail. Uses only
//! [`Participant`]'s public handle (what a receiver decoded, when its videos started, the
//! speaker events it got); must not reach into the forwarder. Also used by the real-process
//! test `tests/select_call_last_n.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use blindfold_client::Participant;
use blindfold_client::simulcast::FrameHeader;
use blindfold_client::video_rx::VideoRx;

use super::checks::Check;

/// How long each speaker talks in the demo.
pub const TURN: Duration = Duration::from_secs(4);
/// The stated bound: from the speaker event reaching a receiver to the new speaker's first
/// decodable frame there, when it was not already showing it (the receiver's key frame
/// request, the publisher's key frame; the forwarder switched when it decided). Detection
/// itself (talking to the event, about 0.5–0.9 s unloaded) is measured, not bounded: a
/// turn must be detected within the turn.
pub const FOLLOW_BOUND: Duration = Duration::from_millis(2000);
/// How often the script samples what each receiver decodes.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// After a speaker event this long passes before a receiver must show at most N videos
/// (the old speaker's video stops at once, the new one starts at its key frame).
const SETTLE: Duration = Duration::from_millis(1000);
/// A receiver must get at least this share of every other participant's audio.
const AUDIO_SHARE: f64 = 0.9;

/// One speaker's turn.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    /// Index of the speaker.
    pub speaker: usize,
    /// When it started talking.
    pub at: Instant,
}

/// What every receiver had decoded at one moment: per receiver, publisher (hex) → frames.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When.
    pub at: Instant,
    /// Per receiver (participant index).
    pub decoded: Vec<HashMap<String, u64>>,
}

/// Everything the script recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Participants' ids (hex), by index.
    pub ids: Vec<String>,
    /// The receivers held to last-N.
    pub last_n_receivers: Vec<usize>,
    /// N.
    pub last_n: Option<u32>,
    /// The control receiver (no last-N, top-K audio 1), if any.
    pub control: Option<usize>,
    /// The turns, in order.
    pub turns: Vec<Turn>,
    /// Samples, in order.
    pub samples: Vec<Sample>,
    /// When the turns ended.
    pub end: Instant,
}

/// Speakers in `speakers` take turns of `turn` until `until`, one talking at a time,
/// while the receivers' decoded frames are sampled.
pub fn run_turns(
    ps: &[Participant],
    speakers: &[usize],
    turn: Duration,
    until: Instant,
) -> (Vec<Turn>, Vec<Sample>) {
    let mut turns = Vec::new();
    // Two samples before the first turn: what was on screen before anyone spoke.
    let mut samples = vec![sample(ps)];
    std::thread::sleep(SAMPLE_EVERY);
    samples.push(sample(ps));
    let mut k = 0;
    while Instant::now() < until && !speakers.is_empty() {
        let speaker = speakers[k % speakers.len()];
        for (i, p) in ps.iter().enumerate() {
            p.set_talking(i == speaker);
        }
        let at = Instant::now();
        turns.push(Turn { speaker, at });
        let end = (at + turn).min(until);
        while Instant::now() < end {
            std::thread::sleep(SAMPLE_EVERY.min(end.saturating_duration_since(Instant::now())));
            samples.push(sample(ps));
        }
        k += 1;
    }
    for p in ps {
        p.set_talking(false);
    }
    (turns, samples)
}

fn sample(ps: &[Participant]) -> Sample {
    Sample {
        at: Instant::now(),
        decoded: ps
            .iter()
            .map(|p| {
                p.video_stats()
                    .into_iter()
                    .map(|(id, s)| (id, s.decoded))
                    .collect()
            })
            .collect(),
    }
}

/// Publishers whose frames receiver `r` decoded between samples `i - 1` and `i`.
fn flowing(rec: &Recording, r: usize, i: usize) -> Vec<String> {
    let (a, b) = (&rec.samples[i - 1].decoded[r], &rec.samples[i].decoded[r]);
    b.iter()
        .filter(|(id, n)| **n > a.get(*id).copied().unwrap_or(0))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The speaker-change latencies the script measured.
#[derive(Debug, Clone, Default)]
pub struct Follow {
    /// From a speaker starting to talk to its first decodable frame at a receiver (ms).
    pub from_talk_ms: Vec<u64>,
    /// From the speaker event reaching the receiver to that frame (ms; 0 when the frame
    /// came first: the forwarder switches before the event reaches the receiver).
    pub from_event_ms: Vec<u64>,
    /// From a speaker starting to talk to the speaker event at a receiver (ms).
    pub detection_ms: Vec<u64>,
    /// (turn, receiver) pairs where the receiver already showed the speaker.
    pub already: usize,
    /// Pairs where no speaker event named the speaker during its turn.
    pub undetected: usize,
    /// Pairs where the speaker's video did not start within the bound of the event.
    pub missed: usize,
    /// The first few misses: (turn, receiver, ms from the event to the late start, if
    /// any), for the report.
    pub misses: Vec<(usize, usize, Option<u64>)>,
}

/// How receivers followed the speakers; `shift` attributes each turn to the speaker `shift`
/// turns later (the control: a receiver that ignored the speakers would look like that).
pub fn follow(ps: &[Participant], rec: &Recording, shift: usize) -> Follow {
    let mut f = Follow::default();
    let starts: Vec<_> = ps.iter().map(Participant::video_starts).collect();
    let events: Vec<_> = ps.iter().map(Participant::speaker_events).collect();
    for (k, turn) in rec.turns.iter().enumerate() {
        let Some(speaker) = rec.turns.get(k + shift).map(|t| t.speaker) else {
            continue;
        };
        let turn_end = rec.turns.get(k + 1).map_or(rec.end, |t| t.at);
        let sid = &rec.ids[speaker];
        for &r in &rec.last_n_receivers {
            if r == speaker {
                continue;
            }
            let Some(event) = events[r]
                .iter()
                .find(|(t, who)| who == sid && *t >= turn.at && *t < turn_end)
                .map(|(t, _)| *t)
            else {
                f.undetected += 1;
                continue;
            };
            f.detection_ms
                .push(event.duration_since(turn.at).as_millis() as u64);
            // Already on screen when the forwarder switched: nothing starts.
            let before = rec
                .samples
                .iter()
                .rposition(|s| s.at + SAMPLE_EVERY <= event)
                .unwrap_or(0);
            if rec.samples.len() > 1 && flowing(rec, r, before.max(1)).contains(sid) {
                f.already += 1;
                continue;
            }
            // The end of the script can cut the bound short.
            if rec.end < event + FOLLOW_BOUND {
                continue;
            }
            let start = starts[r]
                .iter()
                .find(|s| &s.publisher == sid && s.at >= turn.at)
                .map(|s| s.at);
            match start {
                Some(at) if at <= event + FOLLOW_BOUND => {
                    f.from_talk_ms
                        .push(at.duration_since(turn.at).as_millis() as u64);
                    f.from_event_ms
                        .push(at.saturating_duration_since(event).as_millis() as u64);
                }
                late => {
                    f.missed += 1;
                    if f.misses.len() < 5 {
                        let ms =
                            late.map(|at| at.saturating_duration_since(event).as_millis() as u64);
                        f.misses.push((k, r, ms));
                    }
                }
            }
        }
    }
    f
}

/// The `q`-quantile (0..=1) of `v`, in ms.
pub fn quantile(v: &[u64], q: f64) -> Option<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied()
}

/// Whether the receiver's decoder catches a sequence a forwarder broke: a key frame of the
/// top layer, then a delta frame of another layer whose dependency it never got (a layer
/// switch not at S=1,I=1).
fn decoder_catches_a_bad_switch() -> bool {
    let mut rx = VideoRx::default();
    let frame = |layer, key, frame| FrameHeader {
        layer,
        key,
        frame,
        index: 0,
        count: 1,
    };
    rx.on_packet(1, frame(2, true, 0), 1);
    rx.on_packet(2, frame(2, false, 1), 34);
    rx.on_packet(7, frame(0, false, 5), 67);
    rx.stats.undecodable == 1 && rx.stats.decoded == 2
}

/// Check: no receiver was ever handed an undecodable frame.
pub fn decodable(ps: &[Participant]) -> Check {
    let (mut decoded, mut undecodable, mut layer_changes) = (0, 0, 0);
    let mut where_ = Vec::new();
    let ids: Vec<String> = ps.iter().map(|p| p.id().to_hex()).collect();
    for (r, p) in ps.iter().enumerate() {
        for (id, s) in p.video_stats() {
            decoded += s.decoded;
            undecodable += s.undecodable;
            layer_changes += s.layer_changes;
            if s.undecodable > 0 {
                where_.push((r, ids.iter().position(|i| *i == id), s.undecodable));
            }
        }
    }
    let control = decoder_catches_a_bad_switch();
    Check {
        name: "no receiver was ever handed an undecodable video frame".into(),
        passed: undecodable == 0 && decoded > 0 && control,
        detail: format!(
            "{decoded} frames decoded, {undecodable} undecodable, {layer_changes} layer \
             changes at key frames; control: the same decoder fed a layer switch at a delta \
             frame {}{}",
            if control {
                "flags it"
            } else {
                "DID NOT flag it"
            },
            if where_.is_empty() {
                String::new()
            } else {
                format!("; undecodable at (receiver, publisher, count): {where_:?}")
            }
        ),
    }
}

/// The most videos receiver `r` got at once, over intervals that are steady (no speaker
/// event reached it within [`SETTLE`] before or during); and how many such intervals broke
/// `n`.
fn max_videos(ps: &[Participant], rec: &Recording, r: usize, n: usize) -> (usize, usize) {
    let events: Vec<Instant> = ps[r].speaker_events().into_iter().map(|(t, _)| t).collect();
    let first = rec.turns.first().map_or(rec.end, |t| t.at) + SETTLE;
    let (mut max, mut over) = (0, 0);
    for i in 1..rec.samples.len() {
        let (a, b) = (rec.samples[i - 1].at, rec.samples[i].at);
        if a < first || events.iter().any(|&e| e + SETTLE >= a && e <= b) {
            continue;
        }
        let count = flowing(rec, r, i).len();
        max = max.max(count);
        over += usize::from(count > n);
    }
    (max, over)
}

/// Check: every last-N receiver got video from at most N publishers at a time.
pub fn at_most_n(ps: &[Participant], rec: &Recording) -> Option<Check> {
    let n = rec.last_n? as usize;
    let mut over = 0;
    let mut max = 0;
    for &r in &rec.last_n_receivers {
        let (m, o) = max_videos(ps, rec, r, n);
        max = max.max(m);
        over += o;
    }
    let control = rec.control.map(|c| max_videos(ps, rec, c, n));
    let control_fails = control.is_none_or(|(_, o)| o > 0);
    Some(Check {
        name: format!("each receiver got at most {n} videos at a time"),
        passed: over == 0 && max > 0 && control_fails,
        detail: format!(
            "at most {max} videos at once over {} receivers ({over} steady {}ms intervals \
             above {n}); control: the receiver without last-N {}",
            rec.last_n_receivers.len(),
            SAMPLE_EVERY.as_millis(),
            match control {
                Some((m, o)) => format!("got up to {m} at once ({o} intervals above {n})"),
                None => "was not run".into(),
            }
        ),
    })
}

/// Check: video follows the active speaker within [`FOLLOW_BOUND`].
pub fn follows(ps: &[Participant], rec: &Recording) -> Option<(Check, Follow)> {
    rec.last_n?;
    let f = follow(ps, rec, 0);
    let control = follow(ps, rec, 1);
    let control_fails = control.undetected + control.missed > 0;
    let check = Check {
        name: format!(
            "video follows the speaker: every turn detected, the new speaker's first \
             decodable frame within {} ms of the speaker event",
            FOLLOW_BOUND.as_millis()
        ),
        passed: f.missed == 0 && f.undetected == 0 && !f.from_talk_ms.is_empty() && control_fails,
        detail: format!(
            "{} switches: p50 {} ms p99 {} ms from the event (p50 {} ms p99 {} ms from \
             talking; detection p50 {} ms p99 {} ms); {} undetected, {} missed, {} already \
             shown{}; control: credited to the next turn's speaker, {} undetected and {} \
             missed of {}",
            f.from_event_ms.len(),
            fmt_ms(quantile(&f.from_event_ms, 0.5)),
            fmt_ms(quantile(&f.from_event_ms, 0.99)),
            fmt_ms(quantile(&f.from_talk_ms, 0.5)),
            fmt_ms(quantile(&f.from_talk_ms, 0.99)),
            fmt_ms(quantile(&f.detection_ms, 0.5)),
            fmt_ms(quantile(&f.detection_ms, 0.99)),
            f.undetected,
            f.missed,
            f.already,
            if f.misses.is_empty() {
                String::new()
            } else {
                format!(
                    " (misses as (turn, receiver, late start ms): {:?})",
                    f.misses
                )
            },
            control.undetected,
            control.missed,
            control.undetected + control.missed + control.from_event_ms.len() + control.already
        ),
    };
    Some((check, f))
}

fn fmt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Share of every other participant's audio (sent since `since`) that receiver `r` got;
/// the smallest over senders.
fn min_audio_share(ps: &[Participant], r: usize, since: Instant) -> f64 {
    let got = ps[r].audio_from();
    let mut min = f64::INFINITY;
    for (i, p) in ps.iter().enumerate() {
        if i == r {
            continue;
        }
        let Some(&audio) = p.ssrcs().first() else {
            continue;
        };
        let sent = p.sent_since(audio, since);
        if sent == 0 {
            continue;
        }
        // Packets sent before `since` count too; cap the share at 1.
        let share = (got.get(&p.id()).copied().unwrap_or(0) as f64 / sent as f64).min(1.0);
        min = min.min(share);
    }
    min
}

/// Check: every audio stream still reached every receiver held to last-N (or every
/// receiver, without last-N).
pub fn every_audio(ps: &[Participant], rec: &Recording, since: Instant) -> Check {
    let receivers: Vec<usize> = (0..ps.len()).filter(|&i| Some(i) != rec.control).collect();
    let min = receivers
        .iter()
        .map(|&r| min_audio_share(ps, r, since))
        .fold(f64::INFINITY, f64::min);
    let control = rec.control.map(|c| min_audio_share(ps, c, since));
    let control_fails = control.is_none_or(|s| s < AUDIO_SHARE);
    Check {
        name: "every audio stream reached every receiver".into(),
        passed: min.is_finite() && min >= AUDIO_SHARE && control_fails,
        detail: format!(
            "the least-served receiver got {:.1}% of a sender's audio (at least {:.0}% \
             required); control: the receiver asking top-K audio 1 {}",
            min * 100.0,
            AUDIO_SHARE * 100.0,
            control.map_or_else(
                || "was not run".into(),
                |s| format!("got {:.1}% of one", s * 100.0)
            )
        ),
    }
}
