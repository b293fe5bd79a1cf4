//! What each subscriber gets when the forwarder chooses: last-N video by speaker recency
//! plus pins, top-K audio by current activity, and the per-conference dominant speaker
//! that drives both; plus the settings and requests that change them.
//!
//! Owns the derivation from the model's state (settings, each endpoint's [`Receive`],
//! the detector's decisions) to per-subscriber choices, which [`Model::build_routes`]
//! turns into target layers and audio fan-out. Must not touch packets or shards: the
//! shards only ever see the resulting routes, and switch layers at key frames on their
//! own (`crate::select`).
//!
//! # Rules (the same the participants are told, so they can predict what they get)
//! - **Last-N**: a subscriber with N (its own, else the conference's; none: no limit)
//!   gets video from the first N endpoints of the conference's recency list that publish
//!   a selectively forwarded video track, itself excluded, plus every endpoint it pins.
//!   The recency list orders endpoints by the last time they became the dominant
//!   speaker, most recent first; endpoints that never did follow in join order.
//! - **Top-K audio** (only with speaker detection on): a subscriber with K gets audio
//!   from the first K audio publishers of the ranking "dominant speaker, then endpoints
//!   active in the last second (in recency order), then the rest (in recency order)",
//!   itself excluded. A stream being ranked in or out switches at once: audio packets
//!   decode on their own.
//! - **Layers and pause**: a subscription's `layer` caps the layer (default: the top);
//!   `paused` sends nothing; a video outside the subscriber's last-N is paused.
//! - **Speaker detection off**: no audio level is read, no event is emitted, top-K is
//!   ignored (every audio flows) and the recency list stays in join order, so last-N is
//!   static and participants steer with pins, layers and pause.

use super::*;
use crate::select::PAUSED;
use crate::speaker::{Activity, DECIDE_EVERY};

/// How long a speaker counts as active for top-K audio after its last sustained speech.
pub const ACTIVE_HOLD: Duration = Duration::from_secs(1);

/// A dominant-speaker change, as the control API's event stream carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerEvent {
    /// Conference id.
    pub conference: String,
    /// The endpoint id holding the floor.
    pub dominant: Option<String>,
    /// Every endpoint id by recency of holding the floor (see the module doc): the order
    /// last-N takes.
    pub recent: Vec<String>,
}

/// Per subscriber, the publishers it gets video and audio from (`None`: all).
pub(super) struct Choice {
    video: HashMap<EpIdx, HashSet<EpIdx>>,
    audio: HashMap<EpIdx, HashSet<EpIdx>>,
}

impl Choice {
    /// The target layer of `sub`'s subscription `s` to `publisher`'s selective `track`.
    pub(super) fn video_target(
        &self,
        sub: EpIdx,
        publisher: EpIdx,
        s: &Subscription,
        track: &Track,
    ) -> u8 {
        if s.paused
            || self
                .video
                .get(&sub)
                .is_some_and(|set| !set.contains(&publisher))
        {
            return PAUSED;
        }
        let top = track.layers().saturating_sub(1);
        s.layer.map_or(top, |l| l.min(top))
    }

    /// Whether `sub` gets `publisher`'s audio.
    pub(super) fn hears(&self, sub: EpIdx, publisher: EpIdx) -> bool {
        self.audio
            .get(&sub)
            .is_none_or(|set| set.contains(&publisher))
    }
}

impl Model {
    /// The choices for every subscriber of `conf`, with `published` standing for the
    /// endpoints' tracks.
    pub(super) fn choice(
        &self,
        conf: &Conference,
        published: &HashMap<EpIdx, Vec<Track>>,
    ) -> Choice {
        let publishes = |ep: &EpIdx, f: fn(&Track) -> bool| {
            published.get(ep).is_some_and(|ts| ts.iter().any(f))
        };
        let video_order: Vec<EpIdx> = conf
            .recent
            .iter()
            .copied()
            .filter(|ep| publishes(ep, Track::selective))
            .collect();
        let detection = conf.settings.speaker_detection;
        let audio_order: Vec<EpIdx> = if detection {
            let dominant = conf.detector.dominant();
            let is_active = |ep: &EpIdx| conf.active.iter().any(|(e, _)| e == ep);
            let audio = |ep: &EpIdx| publishes(ep, |t| t.kind == TrackKind::Audio);
            dominant
                .into_iter()
                .chain(conf.recent.iter().copied().filter(|e| is_active(e)))
                .chain(conf.recent.iter().copied())
                .filter(audio)
                .fold(Vec::new(), |mut v, ep| {
                    if !v.contains(&ep) {
                        v.push(ep);
                    }
                    v
                })
        } else {
            Vec::new()
        };
        let mut video = HashMap::new();
        let mut audio = HashMap::new();
        for &sub in conf.endpoints.values() {
            let Some(e) = self.endpoint(sub) else {
                continue;
            };
            if let Some(n) = e.receive.last_n.or(conf.settings.last_n) {
                let mut set: HashSet<EpIdx> = video_order
                    .iter()
                    .copied()
                    .filter(|&p| p != sub)
                    .take(n as usize)
                    .collect();
                set.extend(
                    e.receive
                        .pins
                        .iter()
                        .filter_map(|id| conf.endpoints.get(id)),
                );
                video.insert(sub, set);
            }
            let k = if detection {
                e.receive.top_k_audio.or(conf.settings.top_k_audio)
            } else {
                None
            };
            if let Some(k) = k {
                let set = audio_order
                    .iter()
                    .copied()
                    .filter(|&p| p != sub)
                    .take(k as usize)
                    .collect();
                audio.insert(sub, set);
            }
        }
        Choice { video, audio }
    }

    /// Sets a conference's settings (speaker detection, default last-N and top-K).
    /// Switching detection off forgets who held the floor and returns the recency list
    /// to join order.
    pub fn set_conference_settings(
        &mut self,
        conf_id: &str,
        settings: ConferenceSettings,
    ) -> Changed<()> {
        let idx = self.conf_idx(conf_id)?;
        let mut by_join: Vec<(u64, EpIdx)> = self
            .conf(idx)?
            .endpoints
            .values()
            .filter_map(|&ep| Some((self.endpoint(ep)?.joined, ep)))
            .collect();
        by_join.sort_unstable();
        let Some(Some(conf)) = self.confs.get_mut(idx as usize) else {
            return Err(ModelError::NoConference);
        };
        if !settings.speaker_detection && conf.settings.speaker_detection {
            conf.detector = Detector::default();
            conf.active.clear();
            conf.recent = by_join.into_iter().map(|(_, ep)| ep).collect();
        }
        conf.settings = settings;
        Ok(((), vec![self.rebuild(idx)]))
    }

    /// Sets what an endpoint asks the forwarder to choose for it (last-N, top-K audio,
    /// pins). Pins may name endpoints that do not exist (yet).
    pub fn set_receive(&mut self, conf_id: &str, ep_id: &str, receive: Receive) -> Changed<()> {
        if receive.pins.len() > self.limits.subscriptions_per_endpoint {
            return Err(ModelError::TooManySubscriptions {
                max: self.limits.subscriptions_per_endpoint,
            });
        }
        let mut seen = HashSet::with_capacity(receive.pins.len());
        for p in &receive.pins {
            check_id(p, "endpoint")?;
            if p == ep_id {
                return Err(ModelError::Invalid("an endpoint cannot pin itself"));
            }
            if !seen.insert(p) {
                return Err(ModelError::Invalid("pins must be unique"));
            }
        }
        let (conf_idx, ep) = self.endpoint_idx(conf_id, ep_id)?;
        if let Some(e) = self.eps[ep as usize].ep.as_mut() {
            e.receive = receive;
        }
        Ok(((), vec![self.rebuild(conf_idx)]))
    }

    /// Records a shard's activity report for `ep`'s audio in conference `conf`. Stale
    /// (a reused slot, another conference) or with detection off: ignored.
    pub fn speech(
        &mut self,
        conf: ConfIdx,
        ep: EpIdx,
        generation: u32,
        activity: Activity,
        now: Instant,
    ) {
        let Some(slot) = self.eps.get(ep as usize) else {
            return;
        };
        if slot.generation != generation || slot.ep.as_ref().is_none_or(|e| e.conf != conf) {
            return;
        }
        if let Some(Some(c)) = self.confs.get_mut(conf as usize)
            && c.settings.speaker_detection
        {
            c.detector.report(ep, activity, now);
        }
    }

    /// Runs the dominant-speaker decisions that are due at `now` (every
    /// [`DECIDE_EVERY`] per conference). Returns the route updates they cause (only
    /// where some endpoint's last-N or top-K depends on them) and the speaker changes.
    pub fn tick(&mut self, now: Instant) -> (Vec<Update>, Vec<SpeakerEvent>) {
        let mut updates = Vec::new();
        let mut events = Vec::new();
        for idx in 0..self.confs.len() {
            let idx = idx as ConfIdx;
            let (changed, active_changed) = {
                let Some(Some(conf)) = self.confs.get_mut(idx as usize) else {
                    continue;
                };
                if !conf.settings.speaker_detection || conf.next_decision.is_some_and(|t| now < t) {
                    continue;
                }
                conf.next_decision = Some(now + DECIDE_EVERY);
                let changed = conf.detector.decide(now);
                if let Some(d) = changed {
                    conf.recent.retain(|&e| e != d);
                    conf.recent.insert(0, d);
                }
                let before: Vec<EpIdx> = conf.active.iter().map(|(e, _)| *e).collect();
                conf.active.retain(|&(_, until)| now < until);
                for &ep in conf.endpoints.values() {
                    if conf.detector.activity(ep, now).long >= 1 {
                        match conf.active.iter_mut().find(|(e, _)| *e == ep) {
                            Some(a) => a.1 = now + ACTIVE_HOLD,
                            None => conf.active.push((ep, now + ACTIVE_HOLD)),
                        }
                    }
                }
                let mut after: Vec<EpIdx> = conf.active.iter().map(|(e, _)| *e).collect();
                let mut before = before;
                before.sort_unstable();
                after.sort_unstable();
                (changed, before != after)
            };
            let Ok(conf) = self.conf(idx) else { continue };
            let (last_n, top_k) = self.selection_in_use(conf);
            if (changed.is_some() && (last_n || top_k)) || (active_changed && top_k) {
                updates.push(self.rebuild(idx));
            }
            if changed.is_some()
                && let Some(ev) = self.speaker_event(conf)
            {
                events.push(ev);
            }
        }
        (updates, events)
    }

    /// Whether any endpoint of `conf` has a last-N, and a top-K, in effect.
    fn selection_in_use(&self, conf: &Conference) -> (bool, bool) {
        let mut last_n = conf.settings.last_n.is_some();
        let mut top_k = conf.settings.top_k_audio.is_some();
        for &ep in conf.endpoints.values() {
            if let Some(e) = self.endpoint(ep) {
                last_n |= e.receive.last_n.is_some();
                top_k |= e.receive.top_k_audio.is_some();
            }
        }
        (last_n, top_k)
    }

    fn speaker_event(&self, conf: &Conference) -> Option<SpeakerEvent> {
        let id = |ep: EpIdx| self.endpoint(ep).map(|e| e.id.clone());
        Some(SpeakerEvent {
            conference: conf.id.clone(),
            dominant: Some(id(conf.detector.dominant()?)?),
            recent: conf.recent.iter().filter_map(|&ep| id(ep)).collect(),
        })
    }

    /// The current speaker state of every conference with detection on and a dominant
    /// speaker: what a new listener of the event stream starts from.
    pub fn speakers(&self) -> Vec<SpeakerEvent> {
        self.confs
            .iter()
            .flatten()
            .filter(|c| c.settings.speaker_detection)
            .filter_map(|c| self.speaker_event(c))
            .collect()
    }
}
