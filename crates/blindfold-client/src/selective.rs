//! The participant's side of selective forwarding, as one state object the participant's
//! engine calls into: the extension ids it chose for this call, the talker and the
//! simulcast sender, what it receives (decodability per publisher, the videos it should
//! be getting from the speaker events, freezes, key frame requests), and the layer it
//! asks for.
//!
//! Owns that state and returns work (packets to protect and send, feedback SSRCs,
//! signalling messages) instead of doing I/O; must not touch the socket, the key schedule
//! or signalling itself, so the engine that owns those stays the one place they are used.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use blindfold_signal::proto::{ClientMessage, Extensions, Track, TrackKind};
use serde::{Deserialize, Serialize};

use crate::media::AUDIO_PT;
use crate::simulcast::{self, LAYERS, LayerSpec, SimulcastSender, Voice};
use crate::video_rx::{self, FreezeStats, LayerChooser, VideoRx, VideoStats, Watch};

/// SSRCs remembered from before their track was known.
const MAX_UNMAPPED: usize = 64;

/// How a participant takes part in selective forwarding.
#[derive(Debug, Clone, Default)]
pub struct SelectiveConfig {
    /// Publish video as three simulcast layers with frame marking (with
    /// [`crate::ParticipantConfig::video`] set).
    pub simulcast: bool,
    /// Receive video from at most this many recent speakers (plus pins).
    pub last_n: Option<u32>,
    /// Receive audio from at most this many speakers.
    pub top_k_audio: Option<u32>,
    /// Participant ids (hex) whose video it always wants.
    pub pins: Vec<String>,
    /// The highest layer to ask for; with neither this nor a budget, the best.
    pub layer: Option<u8>,
    /// Choose the layer from a download budget for all video, in bit/s.
    pub downlink_bps: Option<u64>,
    /// The simulcast layers to send, lowest first; `None` sends the three
    /// ([`LAYERS`]). Tests on a loaded machine send lighter ones.
    pub layers: Option<Vec<LayerSpec>>,
}

impl SelectiveConfig {
    fn asks(&self) -> bool {
        self.last_n.is_some()
            || self.top_k_audio.is_some()
            || !self.pins.is_empty()
            || self.layer.is_some()
            || self.downlink_bps.is_some()
    }
}

/// When a video started (first decoded frame after not having it) at this receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStart {
    /// The publisher (hex id).
    pub publisher: String,
    /// When its first decodable frame was decoded.
    pub at: Instant,
}

/// Selective-forwarding counters of one participant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectiveStats {
    /// Received video, over all publishers.
    pub video: VideoStats,
    /// Freezes of videos it should have been getting.
    pub freeze: FreezeStats,
    /// Key frame requests (PLI) sent.
    pub key_requests: u64,
    /// Key frames made because a receiver asked.
    pub keys_on_request: u64,
    /// Speaker events received.
    pub speaker_events: u64,
    /// Layer changes asked for (estimate or flag).
    pub layer_requests: u64,
}

/// A participant's selective-forwarding state.
pub struct Selective {
    cfg: SelectiveConfig,
    me: String,
    /// The RFC 8285 ids this participant chose for this call.
    pub audio_level_id: u8,
    /// See `audio_level_id`.
    pub frame_marking_id: u8,
    voice: Voice,
    talking: Arc<AtomicBool>,
    sender: Option<SimulcastSender>,
    /// SSRC → (publisher, layer) of others' simulcast video.
    layer_of: HashMap<u32, (String, u8)>,
    /// SSRCs seen before any track named them, with their last sequence number.
    unmapped: HashMap<u32, u16>,
    /// Publisher → its layer SSRCs, lowest first.
    videos_of: HashMap<String, Vec<u32>>,
    rx: HashMap<String, VideoRx>,
    watches: HashMap<String, Watch>,
    recent: Vec<String>,
    chooser: Option<LayerChooser>,
    layer: Option<u8>,
    /// The layer changed since the last `receive` message.
    layer_changed: bool,
    stats: SelectiveStats,
    starts: Vec<VideoStart>,
    speakers: Vec<(Instant, String)>,
    t0: Instant,
}

impl Selective {
    /// State for participant `me` (hex id) with `cfg`; `talking` is shared with the
    /// handle that scripts the talker.
    pub fn new(cfg: SelectiveConfig, me: String, talking: Arc<AtomicBool>, t0: Instant) -> Self {
        // Per-call ids, as a real client would negotiate them: any of the one-byte form's.
        let audio_level_id = rand::random_range(1..=14u8);
        let frame_marking_id = loop {
            let id = rand::random_range(1..=14u8);
            if id != audio_level_id {
                break id;
            }
        };
        let top = cfg.layers.as_ref().map_or(LAYERS.len(), Vec::len).max(1) as u8 - 1;
        Self {
            chooser: cfg.downlink_bps.map(|b| LayerChooser::new(b, top)),
            layer: cfg.layer,
            layer_changed: false,
            cfg,
            me,
            audio_level_id,
            frame_marking_id,
            voice: Voice::default(),
            talking,
            sender: None,
            layer_of: HashMap::new(),
            unmapped: HashMap::new(),
            videos_of: HashMap::new(),
            rx: HashMap::new(),
            watches: HashMap::new(),
            recent: Vec::new(),
            stats: SelectiveStats::default(),
            starts: Vec::new(),
            speakers: Vec::new(),
            t0,
        }
    }

    /// Whether video goes out as simulcast.
    pub fn simulcast(&self) -> bool {
        self.cfg.simulcast
    }

    /// Sets up the simulcast sender (packets of about `packet_bytes`, `overhead` octets
    /// of SRTP); returns its SSRCs, lowest layer first.
    pub fn start_simulcast(&mut self, packet_bytes: usize, overhead: usize) -> Vec<u32> {
        let layers = self.cfg.layers.as_deref().unwrap_or(&LAYERS);
        let ssrcs: Vec<u32> = (0..layers.len())
            .map(|_| blindfold_e2ee::random_ssrc(&mut rand::rng()))
            .collect();
        let s = SimulcastSender::new(
            layers,
            &ssrcs,
            self.frame_marking_id,
            packet_bytes,
            overhead,
            rand::random,
        );
        self.sender = Some(s);
        ssrcs
    }

    /// The tracks to publish: "mic" with the audio level id, "cam" as simulcast with
    /// frame marking when simulcast is on, else plain.
    pub fn tracks(&self, mic: Option<u32>, cam: Option<Vec<u32>>) -> Vec<Track> {
        let mut tracks = Vec::new();
        if let Some(ssrc) = mic {
            let mut t = Track::new("mic", TrackKind::Audio, vec![ssrc]);
            t.extensions = Extensions {
                audio_level: Some(self.audio_level_id),
                frame_marking: None,
            };
            tracks.push(t);
        }
        if let Some(ssrcs) = cam {
            let mut t = Track::new("cam", TrackKind::Video, ssrcs);
            if self.sender.is_some() {
                t.extensions.frame_marking = Some(self.frame_marking_id);
                t.simulcast = t.ssrcs.len() > 1;
            }
            tracks.push(t);
        }
        tracks
    }

    /// The `receive` message to send after publishing, if this participant asks for
    /// anything.
    pub fn receive_message(&self) -> Option<ClientMessage> {
        self.cfg.asks().then(|| ClientMessage::Receive {
            layer: self
                .layer
                .or(self.chooser.as_ref().map(LayerChooser::layer)),
            last_n: self.cfg.last_n,
            top_k_audio: self.cfg.top_k_audio,
            pins: self.cfg.pins.clone(),
        })
    }

    /// One audio packet (plaintext) with its level extension.
    pub fn audio_packet(&mut self, ssrc: u32, seq: u16, ts: u32, spare: usize) -> Vec<u8> {
        let level = self.voice.next(self.talking.load(Ordering::Relaxed));
        simulcast::build_packet(
            ssrc,
            seq,
            ts,
            AUDIO_PT,
            false,
            &[(self.audio_level_id, level.to_byte())],
            None,
            100,
            spare,
        )
    }

    /// The simulcast frames due now, as (SSRC, sequence, plaintext packet).
    pub fn video_packets(&mut self, spare: usize) -> Vec<(u32, u16, Vec<u8>)> {
        let now = self.now_ms();
        self.sender
            .as_mut()
            .map(|s| s.tick(now, spare))
            .unwrap_or_default()
    }

    /// A member's tracks (from signalling): learns its simulcast layers.
    pub fn on_tracks(&mut self, publisher: &str, tracks: &[Track]) {
        self.layer_of.retain(|_, (p, _)| p != publisher);
        self.videos_of.remove(publisher);
        for t in tracks {
            if t.kind != TrackKind::Audio && t.extensions.frame_marking.is_some() {
                for (i, &s) in t.ssrcs.iter().enumerate() {
                    let layer = if t.simulcast { i as u8 } else { 0 };
                    self.layer_of.insert(s, (publisher.to_string(), layer));
                    // Packets of it arrived before its track did: their frames are lost.
                    if let Some(seq) = self.unmapped.remove(&s) {
                        let now = self.now_ms();
                        self.rx
                            .entry(publisher.to_string())
                            .or_default()
                            .on_unreadable(seq, layer, now);
                    }
                }
                self.videos_of
                    .insert(publisher.to_string(), t.ssrcs.clone());
            }
        }
    }

    /// A member left.
    pub fn on_left(&mut self, publisher: &str) {
        self.layer_of.retain(|_, (p, _)| p != publisher);
        self.videos_of.remove(publisher);
        self.rx.remove(publisher);
        self.watches.remove(publisher);
        self.recent.retain(|p| p != publisher);
    }

    /// Whether `ssrc` is a layer of another member's selectively forwarded video.
    pub fn is_video(&self, ssrc: u32) -> bool {
        self.layer_of.contains_key(&ssrc)
    }

    /// A decrypted packet of another member's selective video: checks its content and
    /// feeds the decoder. Returns false when the content is wrong.
    pub fn on_video(&mut self, ssrc: u32, seq: u16, payload: &[u8], wire_len: usize) -> bool {
        let Some((publisher, _)) = self.layer_of.get(&ssrc).cloned() else {
            return false;
        };
        let Some(Some(h)) = simulcast::check_payload(ssrc, seq, payload, true) else {
            return false;
        };
        let now = self.now_ms();
        if let Some(l) = self
            .chooser
            .as_mut()
            .and_then(|c| c.on_bytes(wire_len, now))
        {
            self.set_layer(l);
        }
        let rx = self.rx.entry(publisher.clone()).or_default();
        let before = rx.last_decoded_ms;
        let stats_before = rx.stats;
        let decoded = rx.on_packet(seq, h, now);
        add_video(&mut self.stats.video, &stats_before, &rx.stats);
        let started =
            decoded && before.is_none_or(|t| now.saturating_sub(t) >= video_rx::FREEZE_MS * 2);
        if started {
            self.starts.push(VideoStart {
                publisher,
                at: Instant::now(),
            });
        }
        true
    }

    /// A packet of an SSRC no member's track names yet (media can overtake the `tracks`
    /// message): remembered, bounded, so its frames count as lost once the track arrives.
    pub fn on_unmapped(&mut self, ssrc: u32, seq: u16) {
        if self.unmapped.len() < MAX_UNMAPPED || self.unmapped.contains_key(&ssrc) {
            self.unmapped.insert(ssrc, seq);
        }
    }

    /// A packet of another member's selective video that could not be opened (no key for
    /// its epoch): its frame counts as lost, so the frames after it are not blamed on the
    /// forwarder.
    pub fn on_video_unreadable(&mut self, ssrc: u32, seq: u16) {
        let Some((publisher, layer)) = self.layer_of.get(&ssrc).cloned() else {
            return;
        };
        let now = self.now_ms();
        self.rx
            .entry(publisher)
            .or_default()
            .on_unreadable(seq, layer, now);
    }

    /// An opened RTCP compound: a PLI or FIR naming one of our layers asks for a key
    /// frame of it.
    pub fn on_rtcp(&mut self, rtcp: &[u8]) {
        let Some(sender) = self.sender.as_mut() else {
            return;
        };
        for ssrc in blindfold_proto::packet::rtcp_media_ssrcs(rtcp) {
            if sender.request_key(ssrc) {
                self.stats.keys_on_request = sender.keys_on_request;
            }
        }
    }

    /// The forwarder's speaker event, relayed by signalling.
    pub fn on_speakers(&mut self, dominant: String, recent: Vec<String>) {
        self.stats.speaker_events += 1;
        self.speakers.push((Instant::now(), dominant));
        self.recent = recent;
    }

    /// Periodic work: which videos should be coming, their freezes, and the SSRCs to ask
    /// a key frame of (the layer this receiver wants, or the best the publisher has).
    pub fn tick(&mut self) -> Vec<u32> {
        let now = self.now_ms();
        let all: Vec<String> = self.videos_of.keys().cloned().collect();
        let (order, last_n) = match self.cfg.last_n {
            // Everyone's video: no speaker needed to know what should come.
            None => (all, None),
            // Last-N before the first speaker event: the forwarder follows its join
            // order, which this side does not know; the videos arriving are the ones it
            // chose (a frozen one among them still gets its key frame request).
            Some(_) if self.recent.is_empty() => {
                let arriving = self
                    .rx
                    .iter()
                    .filter(|(_, r)| {
                        r.last_packet_ms()
                            .is_some_and(|t| now.saturating_sub(t) < video_rx::RUN_IDLE_MS)
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                (arriving, None)
            }
            Some(n) => (self.recent.clone(), Some(n)),
        };
        let videos = &self.videos_of;
        let want: Vec<String> = video_rx::expected(&self.me, last_n, &self.cfg.pins, &order, |p| {
            videos.contains_key(p)
        })
        .into_iter()
        .map(str::to_string)
        .collect();
        self.watches.retain(|p, _| want.contains(p));
        let mut plis = Vec::new();
        for p in want {
            let w = self
                .watches
                .entry(p.clone())
                .or_insert_with(|| Watch::new(now));
            let last = self.rx.get(&p).and_then(|r| r.last_decoded_ms);
            if w.check(last, now, &mut self.stats.freeze)
                && let Some(ssrcs) = self.videos_of.get(&p)
            {
                let top = ssrcs.len().saturating_sub(1) as u8;
                let layer = self.current_layer().unwrap_or(top).min(top);
                if let Some(&s) = ssrcs.get(usize::from(layer)) {
                    plis.push(s);
                    self.stats.key_requests += 1;
                }
            }
        }
        plis
    }

    /// The layer this receiver asks for now.
    pub fn current_layer(&self) -> Option<u8> {
        self.layer
            .or(self.chooser.as_ref().map(LayerChooser::layer))
    }

    /// Asks for another layer from now on: the next `receive` message carries it, and
    /// every expected video gets a key frame request for it at the next tick.
    pub fn set_layer(&mut self, layer: u8) {
        if self.current_layer() == Some(layer) {
            return;
        }
        self.layer = Some(layer);
        self.layer_changed = true;
        self.stats.layer_requests += 1;
        // Ask every expected video for a key frame of the new layer at the next tick.
        for w in self.watches.values_mut() {
            w.last_pli_ms = None;
            w.force = true;
        }
    }

    /// The `receive` message that tells the forwarder about a layer change, once.
    pub fn take_layer_change(&mut self) -> Option<ClientMessage> {
        if !std::mem::take(&mut self.layer_changed) {
            return None;
        }
        Some(ClientMessage::Receive {
            layer: self.layer,
            last_n: self.cfg.last_n,
            top_k_audio: self.cfg.top_k_audio,
            pins: self.cfg.pins.clone(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> SelectiveStats {
        self.stats
    }

    /// The video starts and speaker events since the last call.
    pub fn drain_logs(&mut self) -> (Vec<VideoStart>, Vec<(Instant, String)>) {
        (
            std::mem::take(&mut self.starts),
            std::mem::take(&mut self.speakers),
        )
    }

    /// This participant's simulcast SSRCs.
    pub fn own_ssrcs(&self) -> Vec<u32> {
        self.sender
            .as_ref()
            .map(SimulcastSender::ssrcs)
            .unwrap_or_default()
    }

    /// Whether simulcast video goes out.
    pub fn sending(&self) -> bool {
        self.sender.is_some()
    }

    /// Stops publishing video (the leave has begun).
    pub fn stop_sending(&mut self) {
        self.sender = None;
    }

    /// Per publisher, its video counters at this receiver.
    pub fn per_publisher(&self) -> Vec<(String, VideoStats)> {
        self.rx.iter().map(|(p, r)| (p.clone(), r.stats)).collect()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

fn add_video(total: &mut VideoStats, before: &VideoStats, after: &VideoStats) {
    total.decoded += after.decoded - before.decoded;
    total.undecodable += after.undecodable - before.undecodable;
    total.lost += after.lost - before.lost;
    total.incomplete += after.incomplete - before.incomplete;
    total.layer_changes += after.layer_changes - before.layer_changes;
    total.late += after.late - before.late;
}
