//! The authoritative model of conferences, endpoints, tracks and subscriptions, and its
//! translation into the [`Update`]s that keep every shard's table in step.
//!
//! Owns slot allocation (conference and endpoint indices, endpoint generations), ICE
//! credentials, request validation against the configured limits, and the derivation of
//! each conference's [`ConfRoutes`]. It is sans-IO: every operation checks everything
//! first, then mutates and returns the updates to broadcast (never a partial change), and
//! the time is passed in. It must not send anything, touch HTTP or read the clock; the
//! caller ([`super`]) broadcasts the returned updates while still holding the model, so
//! shards see changes in model order.
//!
//! Subscriptions are stored by (endpoint id, track id) and resolved on every rebuild, so
//! a subscription may name a publisher or a track that does not exist yet: it is kept,
//! reported as `active: false`, and starts routing as soon as the track appears. This
//! makes the order of the signalling service's calls irrelevant.
//!
//! Selective forwarding (last-N, pins, top-K audio, layers, pause) and the conference's
//! dominant speaker are decided here too, in [`selection`]: they are part of what the
//! routes say, and a decision is one more rebuild.

mod selection;

pub use selection::SpeakerEvent;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt as _;

use crate::select::{MAX_LAYERS, Media};
use crate::speaker::Detector;
use crate::table::{
    ConfIdx, ConfRoutes, ConfRoutesBuilder, EpIdx, IceCreds, IngressLimits, Latch, Update,
};

/// Longest caller-given id (conference, endpoint, track).
pub const MAX_ID_LEN: usize = 64;
/// Length of generated conference and endpoint ids (22 chars of a 64-letter alphabet:
/// 132 bits).
const RANDOM_ID_LEN: usize = 22;

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Whether `id` is a valid caller-given id: 1..=64 characters of `[A-Za-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

use crate::stun::{random_pwd, random_ufrag};

/// The limits the model enforces, taken from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most conferences at once.
    pub conferences: usize,
    /// Most endpoints in one conference.
    pub endpoints_per_conference: usize,
    /// Most tracks one endpoint may publish.
    pub tracks_per_endpoint: usize,
    /// Most SSRCs in one track.
    pub ssrcs_per_track: usize,
    /// Most subscriptions one endpoint may hold.
    pub subscriptions_per_endpoint: usize,
}

/// Why the model refused a change. Each maps to one HTTP status and error code (see
/// the forwarder's control API); nothing was changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An id is not 1..=64 characters of `[A-Za-z0-9_-]`.
    #[error("{what} id must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'")]
    InvalidId {
        /// Which kind of id.
        what: &'static str,
    },
    /// No conference has this id.
    #[error("no such conference")]
    NoConference,
    /// The conference has no endpoint with this id.
    #[error("no such endpoint in this conference")]
    NoEndpoint,
    /// The conference id is taken.
    #[error("a conference with this id already exists")]
    ConferenceExists,
    /// The endpoint id is taken in this conference.
    #[error("an endpoint with this id already exists in this conference")]
    EndpointExists,
    /// `max_conferences` reached.
    #[error("the forwarder already holds its maximum of {max} conferences")]
    TooManyConferences {
        /// The configured limit.
        max: usize,
    },
    /// `max_endpoints_per_conference` reached.
    #[error("the conference already holds its maximum of {max} endpoints")]
    TooManyEndpoints {
        /// The configured limit.
        max: usize,
    },
    /// More tracks than `max_tracks_per_endpoint`.
    #[error("at most {max} tracks per endpoint")]
    TooManyTracks {
        /// The configured limit.
        max: usize,
    },
    /// More SSRCs in one track than `max_ssrcs_per_track`.
    #[error("at most {max} ssrcs per track")]
    TooManySsrcs {
        /// The configured limit.
        max: usize,
    },
    /// More subscriptions than `max_subscriptions_per_endpoint`.
    #[error("at most {max} subscriptions per endpoint")]
    TooManySubscriptions {
        /// The configured limit.
        max: usize,
    },
    /// An SSRC is owned by another endpoint of the conference.
    #[error("ssrc {ssrc} is already owned by another endpoint of this conference")]
    SsrcTaken {
        /// The contested SSRC.
        ssrc: u32,
    },
    /// A well-formed request that makes no sense (duplicates, empty track, bad address).
    #[error("{0}")]
    Invalid(&'static str),
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(utoipa::ToSchema)]
pub enum TrackKind {
    /// Microphone audio.
    Audio,
    /// Camera video.
    Video,
    /// Screen share.
    Screen,
}

/// The RFC 8285 header extension ids a track's packets carry, chosen per call by the
/// participants and declared with the track (1..=14 fit the one-byte form, up to 255
/// the two-byte form). Absent: the forwarder reads nothing of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackExt {
    /// RFC 6464 audio level (audio tracks): feeds speaker detection.
    pub audio_level: Option<u8>,
    /// RFC 9626 frame marking (video and screen tracks): makes the track selectively
    /// forwarded (last-N, layers, pause), switching only at key frames.
    pub frame_marking: Option<u8>,
}

/// One published track: its id, kind and SSRCs (simulcast layers, RTX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Caller-given id, unique within the endpoint.
    pub id: String,
    /// What it carries.
    pub kind: TrackKind,
    /// Its SSRCs, owned by the endpoint within the conference. With `simulcast`, one per
    /// layer, lowest first.
    pub ssrcs: Vec<u32>,
    /// Header extension ids.
    pub ext: TrackExt,
    /// The SSRCs are simulcast layers (needs frame marking): a subscriber gets one.
    pub simulcast: bool,
}

impl Track {
    /// A track without extensions or simulcast: forwarded as it comes.
    pub fn new(id: impl Into<String>, kind: TrackKind, ssrcs: impl Into<Vec<u32>>) -> Self {
        Self {
            id: id.into(),
            kind,
            ssrcs: ssrcs.into(),
            ext: TrackExt::default(),
            simulcast: false,
        }
    }

    /// Whether the forwarder chooses what of it each subscriber gets (frame-marked
    /// video or screen).
    pub fn selective(&self) -> bool {
        self.kind != TrackKind::Audio && self.ext.frame_marking.is_some()
    }

    /// Its number of layers: one per SSRC with simulcast, else one.
    pub fn layers(&self) -> u8 {
        if self.simulcast {
            self.ssrcs.len() as u8
        } else {
            1
        }
    }

    /// The layer `ssrc` carries.
    fn layer_of(&self, i: usize) -> u8 {
        if self.simulcast { i as u8 } else { 0 }
    }
}

/// One subscription: receive (endpoint, track), with a layer choice for a selectively
/// forwarded track.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// Publisher endpoint id.
    pub endpoint: String,
    /// Track id of the publisher.
    pub track: String,
    /// The highest layer wanted (0 = lowest); `None`: the track's highest. The forwarder
    /// sends the highest layer at or below it that the publisher sends.
    pub layer: Option<u8>,
    /// Subscribed but nothing sent (a layer choice: "none").
    pub paused: bool,
}

impl Subscription {
    /// Receive `track` of `endpoint`, best layer, not paused.
    pub fn new(endpoint: impl Into<String>, track: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            track: track.into(),
            layer: None,
            paused: false,
        }
    }
}

/// What an endpoint asks the forwarder to choose for it. Absent values fall back to the
/// conference's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receive {
    /// Video from at most this many of the most recent speakers (pins come on top).
    pub last_n: Option<u32>,
    /// Audio from at most this many of the currently loudest speakers.
    pub top_k_audio: Option<u32>,
    /// Endpoints whose video it always gets.
    pub pins: Vec<String>,
}

/// Per-conference choices of the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConferenceSettings {
    /// Read audio levels and identify the dominant speaker. Off: the forwarder reads no
    /// audio level, emits no speaker event, ignores top-K audio, and last-N follows the
    /// join order (participants choose with pins, layers and pause).
    pub speaker_detection: bool,
    /// Default last-N for endpoints that set none (`None`: every video).
    pub last_n: Option<u32>,
    /// Default top-K audio for endpoints that set none (`None`: every audio).
    pub top_k_audio: Option<u32>,
}

impl Default for ConferenceSettings {
    fn default() -> Self {
        Self {
            speaker_detection: true,
            last_n: None,
            top_k_audio: None,
        }
    }
}

/// How an endpoint's address is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latched {
    Declared,
    Stun { consent_until: Instant },
}

// No `Debug` on the model's internals: they hold ids and addresses, which must not
// reach a log by accident.
struct Endpoint {
    id: String,
    /// The conference it belongs to.
    conf: ConfIdx,
    ufrag: String,
    tracks: Vec<Track>,
    subscriptions: Vec<Subscription>,
    receive: Receive,
    /// When it joined, in the model's sequence (join order when detection is off).
    joined: u64,
    /// The address is never shown by the API; it is kept for debugging and so a
    /// declared address can be told from a STUN one.
    addr: Option<(SocketAddr, Latched)>,
}

#[derive(Default)]
struct EpSlot {
    generation: u32,
    ep: Option<Endpoint>,
}

struct Conference {
    id: String,
    /// Endpoint id → slot, ordered so listings are stable.
    endpoints: BTreeMap<String, EpIdx>,
    settings: ConferenceSettings,
    /// Dominant speaker identification over the endpoints' audio levels.
    detector: Detector<EpIdx>,
    /// Endpoints by the last time they held the floor, most recent first; those that
    /// never did follow in join order. Last-N takes its first N.
    recent: Vec<EpIdx>,
    /// Endpoints that spoke lately, each until when it counts as active (top-K audio).
    active: Vec<(EpIdx, Instant)>,
    /// When the next dominant-speaker decision is due.
    next_decision: Option<Instant>,
}

/// A newly created endpoint, as the API hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// Its id.
    pub id: String,
    /// Slot index (what shards know it by).
    pub ep: EpIdx,
    /// Slot generation.
    pub generation: u32,
    /// Forwarder-side ICE ufrag.
    pub ufrag: String,
    /// ICE pwd.
    pub pwd: String,
}

/// One endpoint as the API shows it (no address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its id.
    pub id: String,
    /// Whether it has an address packets are sent to now: declared, or latched by STUN
    /// with consent not yet lapsed.
    pub latched: bool,
    /// For a STUN-latched endpoint, how long its consent still runs (0 when lapsed).
    pub consent_expires_in: Option<Duration>,
    /// Published tracks.
    pub tracks: Vec<Track>,
    /// Subscriptions, each with whether it currently resolves to a track.
    pub subscriptions: Vec<(Subscription, bool)>,
    /// What it asked the forwarder to choose for it.
    pub receive: Receive,
}

/// One conference as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceInfo {
    /// Its id.
    pub id: String,
    /// Its endpoints, by id.
    pub endpoints: Vec<EndpointInfo>,
    /// Its settings.
    pub settings: ConferenceSettings,
    /// The dominant speaker, when detection is on and someone has spoken.
    pub dominant: Option<String>,
}

/// Gauges for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Conferences.
    pub conferences: usize,
    /// Endpoints.
    pub endpoints: usize,
    /// Endpoints with a usable address (see [`EndpointInfo::latched`]).
    pub latched: usize,
}

/// The control thread's model: the only writer of routing state.
pub struct Model {
    limits: Limits,
    ingress: IngressLimits,
    conf_by_id: HashMap<String, ConfIdx>,
    confs: Vec<Option<Conference>>,
    free_confs: Vec<ConfIdx>,
    eps: Vec<EpSlot>,
    free_eps: Vec<EpIdx>,
    ufrags: HashSet<String>,
    /// Latched (STUN) addresses: one endpoint each.
    by_addr: HashMap<SocketAddr, EpIdx>,
    /// Declared addresses: relays of several calls to one peer forwarder share one
    /// (shards tell them apart by SSRC, see [`crate::table`]).
    declared: HashMap<SocketAddr, Vec<EpIdx>>,
    endpoint_count: usize,
    /// Endpoints ever created: each one's join sequence number.
    joins: u64,
}

type Changed<T> = Result<(T, Vec<Update>), ModelError>;

impl Model {
    /// An empty model enforcing `limits` and handing `ingress` to every new endpoint.
    pub fn new(limits: Limits, ingress: IngressLimits) -> Self {
        Self {
            limits,
            ingress,
            conf_by_id: HashMap::new(),
            confs: Vec::new(),
            free_confs: Vec::new(),
            eps: Vec::new(),
            free_eps: Vec::new(),
            ufrags: HashSet::new(),
            by_addr: HashMap::new(),
            declared: HashMap::new(),
            endpoint_count: 0,
            joins: 0,
        }
    }

    /// Number of conferences.
    pub fn conference_count(&self) -> usize {
        self.conf_by_id.len()
    }

    /// Creates a conference with `id`, or a random one. No update is needed: a
    /// conference's routes are sent with its first endpoint.
    pub fn create_conference(&mut self, id: Option<String>) -> Changed<String> {
        let id = match id {
            Some(id) => {
                check_id(&id, "conference")?;
                if self.conf_by_id.contains_key(&id) {
                    return Err(ModelError::ConferenceExists);
                }
                id
            }
            None => loop {
                let id = random_string(ID_ALPHABET, RANDOM_ID_LEN);
                if !self.conf_by_id.contains_key(&id) {
                    break id;
                }
            },
        };
        if self.conf_by_id.len() >= self.limits.conferences {
            return Err(ModelError::TooManyConferences {
                max: self.limits.conferences,
            });
        }
        let conf = Conference {
            id: id.clone(),
            endpoints: BTreeMap::new(),
            settings: ConferenceSettings::default(),
            detector: Detector::default(),
            recent: Vec::new(),
            active: Vec::new(),
            next_decision: None,
        };
        let idx = match self.free_confs.pop() {
            Some(i) => {
                self.confs[i as usize] = Some(conf);
                i
            }
            None => {
                self.confs.push(Some(conf));
                (self.confs.len() - 1) as ConfIdx
            }
        };
        self.conf_by_id.insert(id.clone(), idx);
        Ok((id, Vec::new()))
    }

    /// Deletes a conference: its routes go, then each of its endpoints.
    pub fn delete_conference(&mut self, id: &str) -> Changed<()> {
        let idx = self.conf_idx(id)?;
        let Some(conf) = self.confs[idx as usize].take() else {
            return Err(ModelError::NoConference);
        };
        self.conf_by_id.remove(id);
        self.free_confs.push(idx);
        let mut updates = Vec::with_capacity(conf.endpoints.len() + 1);
        updates.push(Update::Routes {
            conf: idx,
            routes: None,
        });
        for &ep in conf.endpoints.values() {
            self.free_endpoint(ep);
            updates.push(Update::RemoveEndpoint { ep });
        }
        Ok(((), updates))
    }

    /// Creates an endpoint in conference `conf_id` with `id`, or a random one, and fresh
    /// ICE credentials. Updates: the endpoint, then the conference's routes.
    pub fn create_endpoint(&mut self, conf_id: &str, id: Option<String>) -> Changed<NewEndpoint> {
        let conf_idx = self.conf_idx(conf_id)?;
        let conf = self.conf(conf_idx)?;
        let id = match id {
            Some(id) => {
                check_id(&id, "endpoint")?;
                if conf.endpoints.contains_key(&id) {
                    return Err(ModelError::EndpointExists);
                }
                id
            }
            None => loop {
                let id = random_string(ID_ALPHABET, RANDOM_ID_LEN);
                if !conf.endpoints.contains_key(&id) {
                    break id;
                }
            },
        };
        if conf.endpoints.len() >= self.limits.endpoints_per_conference {
            return Err(ModelError::TooManyEndpoints {
                max: self.limits.endpoints_per_conference,
            });
        }
        // Ufrags index every shard's STUN lookup, so they must be unique forwarder-wide.
        let ufrag = loop {
            let u = random_ufrag();
            if !self.ufrags.contains(&u) {
                break u;
            }
        };
        let pwd = random_pwd();
        let ep = match self.free_eps.pop() {
            Some(i) => i,
            None => {
                self.eps.push(EpSlot::default());
                (self.eps.len() - 1) as EpIdx
            }
        };
        let slot = &mut self.eps[ep as usize];
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        slot.ep = Some(Endpoint {
            id: id.clone(),
            conf: conf_idx,
            ufrag: ufrag.clone(),
            tracks: Vec::new(),
            subscriptions: Vec::new(),
            receive: Receive::default(),
            joined: self.joins,
            addr: None,
        });
        self.joins += 1;
        self.ufrags.insert(ufrag.clone());
        self.endpoint_count += 1;
        if let Some(Some(conf)) = self.confs.get_mut(conf_idx as usize) {
            conf.endpoints.insert(id.clone(), ep);
            conf.recent.push(ep);
        }
        let mut updates = vec![Update::Endpoint {
            ep,
            generation,
            conf: conf_idx,
            ice: Some(IceCreds {
                ufrag: ufrag.as_str().into(),
                pwd: pwd.as_bytes().into(),
            }),
            limits: self.ingress,
        }];
        updates.push(self.rebuild(conf_idx));
        Ok((
            NewEndpoint {
                id,
                ep,
                generation,
                ufrag,
                pwd,
            },
            updates,
        ))
    }

    /// Deletes an endpoint. Updates: the conference's routes without it, then its removal,
    /// so no shard ever routes to a freed slot.
    pub fn delete_endpoint(&mut self, conf_id: &str, ep_id: &str) -> Changed<()> {
        let (conf_idx, ep) = self.endpoint_idx(conf_id, ep_id)?;
        if let Some(Some(conf)) = self.confs.get_mut(conf_idx as usize) {
            conf.endpoints.remove(ep_id);
            conf.recent.retain(|&e| e != ep);
            conf.active.retain(|&(e, _)| e != ep);
            conf.detector.remove(ep);
        }
        self.free_endpoint(ep);
        let routes = self.rebuild(conf_idx);
        Ok(((), vec![routes, Update::RemoveEndpoint { ep }]))
    }

    /// Declares the address of a plain-RTP peer; it receives and may send from there.
    pub fn set_address(&mut self, conf_id: &str, ep_id: &str, addr: SocketAddr) -> Changed<()> {
        let ip = addr.ip();
        if addr.port() == 0 {
            return Err(ModelError::Invalid("port must not be 0"));
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == std::net::Ipv4Addr::BROADCAST {
            return Err(ModelError::Invalid(
                "ip must be a unicast address (not unspecified, multicast or broadcast)",
            ));
        }
        let (_, ep) = self.endpoint_idx(conf_id, ep_id)?;
        let generation = self.eps[ep as usize].generation;
        self.set_addr(ep, addr, Latched::Declared);
        Ok((
            (),
            vec![Update::Address {
                ep,
                generation,
                addr: Some((addr, Latch::Declared)),
            }],
        ))
    }

    /// Replaces the tracks an endpoint publishes. Refused as a whole when over a limit,
    /// when a track id or SSRC repeats, or when an SSRC is owned by another endpoint of
    /// the conference.
    pub fn set_tracks(&mut self, conf_id: &str, ep_id: &str, tracks: Vec<Track>) -> Changed<()> {
        if tracks.len() > self.limits.tracks_per_endpoint {
            return Err(ModelError::TooManyTracks {
                max: self.limits.tracks_per_endpoint,
            });
        }
        let mut ids = HashSet::with_capacity(tracks.len());
        let mut ssrcs = HashSet::new();
        for t in &tracks {
            check_id(&t.id, "track")?;
            if !ids.insert(t.id.as_str()) {
                return Err(ModelError::Invalid("track ids must be unique"));
            }
            if t.ssrcs.is_empty() {
                return Err(ModelError::Invalid("a track needs at least one ssrc"));
            }
            if t.ssrcs.len() > self.limits.ssrcs_per_track {
                return Err(ModelError::TooManySsrcs {
                    max: self.limits.ssrcs_per_track,
                });
            }
            check_track_ext(t)?;
            for &s in &t.ssrcs {
                if !ssrcs.insert(s) {
                    return Err(ModelError::Invalid(
                        "an ssrc may appear only once among an endpoint's tracks",
                    ));
                }
            }
        }
        let (conf_idx, ep) = self.endpoint_idx(conf_id, ep_id)?;
        // Building the routes with the new tracks is the conflict check; nothing is
        // changed if it fails.
        let routes = self.build_routes(conf_idx, Some((ep, &tracks)), true)?;
        if let Some(e) = self.eps[ep as usize].ep.as_mut() {
            e.tracks = tracks;
        }
        Ok((
            (),
            vec![Update::Routes {
                conf: conf_idx,
                routes: Some(Arc::new(routes)),
            }],
        ))
    }

    /// Replaces an endpoint's subscriptions. Subscriptions to endpoints or tracks that do
    /// not exist (yet) are kept and route nothing until they appear.
    pub fn set_subscriptions(
        &mut self,
        conf_id: &str,
        ep_id: &str,
        subscriptions: Vec<Subscription>,
    ) -> Changed<()> {
        if subscriptions.len() > self.limits.subscriptions_per_endpoint {
            return Err(ModelError::TooManySubscriptions {
                max: self.limits.subscriptions_per_endpoint,
            });
        }
        let mut seen = HashSet::with_capacity(subscriptions.len());
        for s in &subscriptions {
            check_id(&s.endpoint, "endpoint")?;
            check_id(&s.track, "track")?;
            if s.endpoint == ep_id {
                return Err(ModelError::Invalid(
                    "an endpoint cannot subscribe to its own tracks",
                ));
            }
            if s.layer.is_some_and(|l| usize::from(l) >= MAX_LAYERS) {
                return Err(ModelError::Invalid("layer must be 0..=3"));
            }
            if !seen.insert((&s.endpoint, &s.track)) {
                return Err(ModelError::Invalid("subscriptions must be unique"));
            }
        }
        let (conf_idx, ep) = self.endpoint_idx(conf_id, ep_id)?;
        if let Some(e) = self.eps[ep as usize].ep.as_mut() {
            e.subscriptions = subscriptions;
        }
        let routes = self.rebuild(conf_idx);
        Ok(((), vec![routes]))
    }

    /// Records a move a shard made after a verified, nominating check and the return-path
    /// proof of `addr`. Returns the updates that give every shard the address; none for a
    /// stale generation. An address that a live endpoint of another conference holds is
    /// never taken (the shard checks too, but its view may lag): the move is refused and
    /// the updates restore both endpoints' addresses on every shard.
    pub fn latched(
        &mut self,
        ep: EpIdx,
        generation: u32,
        addr: SocketAddr,
        consent_until: Instant,
        now: Instant,
    ) -> Vec<Update> {
        let Some(me) = self
            .eps
            .get(ep as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.ep.as_ref())
        else {
            return Vec::new();
        };
        let holders = self
            .by_addr
            .get(&addr)
            .into_iter()
            .chain(self.declared.get(&addr).into_iter().flatten())
            .copied()
            .filter(|&h| {
                h != ep
                    && self
                        .endpoint(h)
                        .is_some_and(|h| h.conf != me.conf && is_latched(h, now))
            })
            .collect::<Vec<_>>();
        if !holders.is_empty() {
            return std::iter::once(ep)
                .chain(holders)
                .filter_map(|e| self.address_update(e))
                .collect();
        }
        self.set_addr(ep, addr, Latched::Stun { consent_until });
        vec![Update::Address {
            ep,
            generation,
            addr: Some((addr, Latch::Stun { consent_until })),
        }]
    }

    /// The update that sets `ep`'s address on every shard to the model's.
    fn address_update(&self, ep: EpIdx) -> Option<Update> {
        let slot = self.eps.get(ep as usize)?;
        let e = slot.ep.as_ref()?;
        Some(Update::Address {
            ep,
            generation: slot.generation,
            addr: e.addr.map(|(a, how)| {
                let latch = match how {
                    Latched::Declared => Latch::Declared,
                    Latched::Stun { consent_until } => Latch::Stun { consent_until },
                };
                (a, latch)
            }),
        })
    }

    /// Records a consent refresh reported by a shard: a verified check on `addr`, which
    /// must still be the endpoint's address (a refresh never moves it). Returns the update
    /// that gives every shard the new deadline, or `None` when stale.
    pub fn consent(
        &mut self,
        ep: EpIdx,
        generation: u32,
        addr: SocketAddr,
        consent_until: Instant,
    ) -> Option<Update> {
        let slot = self.eps.get_mut(ep as usize)?;
        if slot.generation != generation {
            return None;
        }
        let e = slot.ep.as_mut()?;
        match &mut e.addr {
            Some((a, Latched::Stun { consent_until: c })) if *a == addr => {
                *c = (*c).max(consent_until);
                let consent_until = *c;
                Some(Update::Address {
                    ep,
                    generation,
                    addr: Some((addr, Latch::Stun { consent_until })),
                })
            }
            _ => None,
        }
    }

    /// Ids of all conferences with their endpoint counts, sorted by id.
    pub fn list(&self) -> Vec<(String, usize)> {
        let mut out: Vec<_> = self
            .confs
            .iter()
            .flatten()
            .map(|c| (c.id.clone(), c.endpoints.len()))
            .collect();
        out.sort_unstable();
        out
    }

    /// A conference's endpoints, tracks, subscriptions and latch state at `now`.
    pub fn conference(&self, id: &str, now: Instant) -> Result<ConferenceInfo, ModelError> {
        let idx = self.conf_idx(id)?;
        let conf = self.conf(idx)?;
        let endpoints = conf
            .endpoints
            .values()
            .filter_map(|&ep| self.endpoint(ep))
            .map(|e| {
                let subscriptions = e
                    .subscriptions
                    .iter()
                    .map(|s| (s.clone(), self.resolve(conf, s).is_some()))
                    .collect();
                EndpointInfo {
                    receive: e.receive.clone(),
                    id: e.id.clone(),
                    latched: is_latched(e, now),
                    consent_expires_in: match e.addr {
                        Some((_, Latched::Stun { consent_until })) => {
                            Some(consent_until.saturating_duration_since(now))
                        }
                        _ => None,
                    },
                    tracks: e.tracks.clone(),
                    subscriptions,
                }
            })
            .collect();
        Ok(ConferenceInfo {
            id: conf.id.clone(),
            endpoints,
            settings: conf.settings,
            dominant: conf
                .detector
                .dominant()
                .and_then(|d| self.endpoint(d))
                .map(|e| e.id.clone()),
        })
    }

    /// Gauges at `now`.
    pub fn counts(&self, now: Instant) -> Counts {
        Counts {
            conferences: self.conf_by_id.len(),
            endpoints: self.endpoint_count,
            latched: self
                .eps
                .iter()
                .filter_map(|s| s.ep.as_ref())
                .filter(|e| is_latched(e, now))
                .count(),
        }
    }

    fn conf_idx(&self, id: &str) -> Result<ConfIdx, ModelError> {
        check_id(id, "conference")?;
        self.conf_by_id
            .get(id)
            .copied()
            .ok_or(ModelError::NoConference)
    }

    fn conf(&self, idx: ConfIdx) -> Result<&Conference, ModelError> {
        self.confs
            .get(idx as usize)
            .and_then(Option::as_ref)
            .ok_or(ModelError::NoConference)
    }

    fn endpoint(&self, ep: EpIdx) -> Option<&Endpoint> {
        self.eps.get(ep as usize).and_then(|s| s.ep.as_ref())
    }

    fn endpoint_idx(&self, conf_id: &str, ep_id: &str) -> Result<(ConfIdx, EpIdx), ModelError> {
        let conf_idx = self.conf_idx(conf_id)?;
        check_id(ep_id, "endpoint")?;
        let ep = self
            .conf(conf_idx)?
            .endpoints
            .get(ep_id)
            .copied()
            .ok_or(ModelError::NoEndpoint)?;
        Ok((conf_idx, ep))
    }

    fn free_endpoint(&mut self, ep: EpIdx) {
        if let Some(e) = self.eps.get_mut(ep as usize).and_then(|s| s.ep.take()) {
            self.ufrags.remove(&e.ufrag);
            if let Some((a, how)) = e.addr {
                self.unindex(ep, a, how);
            }
            self.endpoint_count -= 1;
            self.free_eps.push(ep);
        }
    }

    /// Sets the address of `ep`, keeping the address indexes in step, as the shards do
    /// (`Table::set_address`): a latched address belongs to one endpoint, so any other
    /// endpoint there loses it; a declared address is shared with the other endpoints
    /// that declared it and taken from one latched there.
    fn set_addr(&mut self, ep: EpIdx, addr: SocketAddr, how: Latched) {
        let Some(e) = self.eps.get_mut(ep as usize).and_then(|s| s.ep.as_mut()) else {
            return;
        };
        let old = e.addr.replace((addr, how));
        let declared = |a: SocketAddr, how: Latched| (a, matches!(how, Latched::Declared));
        if old.map(|(a, h)| declared(a, h)) == Some(declared(addr, how)) {
            return;
        }
        if let Some((a, h)) = old {
            self.unindex(ep, a, h);
        }
        let mut lose = Vec::new();
        match how {
            Latched::Declared => {
                if let Some(prev) = self.by_addr.remove(&addr) {
                    lose.push(prev);
                }
                let d = self.declared.entry(addr).or_default();
                if !d.contains(&ep) {
                    d.push(ep);
                }
            }
            Latched::Stun { .. } => {
                lose.extend(self.declared.remove(&addr).into_iter().flatten());
                lose.extend(self.by_addr.insert(addr, ep));
            }
        }
        for prev in lose.into_iter().filter(|&p| p != ep) {
            if let Some(p) = self.eps.get_mut(prev as usize).and_then(|s| s.ep.as_mut()) {
                p.addr = None;
            }
        }
    }

    /// Removes `ep` from the index of address `a`, which it held as `how`.
    fn unindex(&mut self, ep: EpIdx, a: SocketAddr, how: Latched) {
        match how {
            Latched::Stun { .. } => {
                if self.by_addr.get(&a) == Some(&ep) {
                    self.by_addr.remove(&a);
                }
            }
            Latched::Declared => {
                if let Some(d) = self.declared.get_mut(&a) {
                    d.retain(|&e| e != ep);
                    if d.is_empty() {
                        self.declared.remove(&a);
                    }
                }
            }
        }
    }

    /// The publisher slot and track a subscription names, if both exist.
    fn resolve<'a>(&'a self, conf: &Conference, s: &Subscription) -> Option<&'a Track> {
        let &p = conf.endpoints.get(&s.endpoint)?;
        self.endpoint(p)?.tracks.iter().find(|t| t.id == s.track)
    }

    /// The conference's routes as the model stands, after a change that cannot create
    /// an SSRC conflict (only [`Model::set_tracks`] can, and it checks first). Infallible,
    /// so no operation fails after it has mutated: a conference that is gone gets `None`.
    fn rebuild(&self, conf: ConfIdx) -> Update {
        let routes = self.build_routes(conf, None, false).ok().map(Arc::new);
        Update::Routes { conf, routes }
    }

    /// Derives the conference's routes from the model, with `replace` standing in for
    /// one endpoint's tracks (to check a change before making it). With `strict`, an SSRC
    /// owned twice is an error; without, the second claim is skipped (the model's
    /// invariant is that this never happens).
    fn build_routes(
        &self,
        conf_idx: ConfIdx,
        replace: Option<(EpIdx, &[Track])>,
        strict: bool,
    ) -> Result<ConfRoutes, ModelError> {
        let conf = self.conf(conf_idx)?;
        let tracks_of = |ep: EpIdx, e: &'_ Endpoint| -> Vec<Track> {
            match replace {
                Some((r, t)) if r == ep => t.to_vec(),
                _ => e.tracks.clone(),
            }
        };
        let mut b = ConfRoutesBuilder::default();
        let mut published: HashMap<EpIdx, Vec<Track>> = HashMap::new();
        for &ep in conf.endpoints.values() {
            let Some(e) = self.endpoint(ep) else { continue };
            let tracks = tracks_of(ep, e);
            for t in &tracks {
                for &s in &t.ssrcs {
                    if let Err(taken) = b.own(s, ep)
                        && strict
                    {
                        return Err(ModelError::SsrcTaken { ssrc: taken.ssrc });
                    }
                }
            }
            published.insert(ep, tracks);
        }
        let choice = self.choice(conf, &published);
        // Selective video tracks collect their subscribers first, then become routes.
        let mut video: HashMap<(EpIdx, &str), Vec<crate::select::SelSub>> = HashMap::new();
        for &sub in conf.endpoints.values() {
            let Some(e) = self.endpoint(sub) else {
                continue;
            };
            for s in &e.subscriptions {
                let Some((&p, track)) = conf.endpoints.get(&s.endpoint).and_then(|p| {
                    let t = published.get(p)?.iter().find(|t| t.id == s.track)?;
                    Some((p, t))
                }) else {
                    continue;
                };
                if track.selective() {
                    let target = choice.video_target(sub, p, s, track);
                    video
                        .entry((p, track.id.as_str()))
                        .or_default()
                        .push(crate::select::SelSub { ep: sub, target });
                    continue;
                }
                if track.kind == TrackKind::Audio && !choice.hears(sub, p) {
                    continue;
                }
                for &ssrc in &track.ssrcs {
                    b.subscribe(ssrc, sub);
                }
            }
        }
        for &ep in conf.endpoints.values() {
            let Some(tracks) = published.get(&ep) else {
                continue;
            };
            let generation = self.eps.get(ep as usize).map_or(0, |s| s.generation);
            for t in tracks {
                if t.selective() {
                    let subs = video.remove(&(ep, t.id.as_str())).unwrap_or_default();
                    let idx = b.video_track(crate::select::VideoRoute {
                        key: t.ssrcs.first().copied().unwrap_or(0),
                        owner: ep,
                        layers: t.layers(),
                        frame_marking: t.ext.frame_marking.unwrap_or(0),
                        subs: subs.into_boxed_slice(),
                        state: 0,
                    });
                    for (i, &ssrc) in t.ssrcs.iter().enumerate() {
                        b.set_media(
                            ssrc,
                            Media::Video {
                                track: idx,
                                layer: t.layer_of(i),
                            },
                        );
                    }
                } else if let (TrackKind::Audio, Some(id), true) =
                    (t.kind, t.ext.audio_level, conf.settings.speaker_detection)
                {
                    for &ssrc in &t.ssrcs {
                        let stream = b.audio_stream(crate::select::AudioRoute {
                            key: ssrc,
                            owner: ep,
                            generation,
                        });
                        b.set_media(ssrc, Media::Audio { stream, ext: id });
                    }
                }
            }
        }
        Ok(b.build())
    }
}

/// A track's extension ids and simulcast fit its kind.
fn check_track_ext(t: &Track) -> Result<(), ModelError> {
    let ext = t.ext;
    if ext.audio_level == Some(0) || ext.frame_marking == Some(0) {
        return Err(ModelError::Invalid("extension ids are 1..=255"));
    }
    if t.kind == TrackKind::Audio && ext.frame_marking.is_some() {
        return Err(ModelError::Invalid(
            "frame_marking is for video and screen tracks",
        ));
    }
    if t.kind != TrackKind::Audio && ext.audio_level.is_some() {
        return Err(ModelError::Invalid("audio_level is for audio tracks"));
    }
    if t.simulcast {
        if ext.frame_marking.is_none() {
            return Err(ModelError::Invalid(
                "simulcast needs frame_marking: layers switch only at key frames",
            ));
        }
        if t.ssrcs.len() > MAX_LAYERS {
            return Err(ModelError::Invalid("at most 4 simulcast layers"));
        }
    }
    Ok(())
}

fn check_id(id: &str, what: &'static str) -> Result<(), ModelError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ModelError::InvalidId { what })
    }
}

fn is_latched(e: &Endpoint, now: Instant) -> bool {
    match e.addr {
        Some((_, Latched::Declared)) => true,
        Some((_, Latched::Stun { consent_until })) => now < consent_until,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::new(
            Limits {
                conferences: 2,
                endpoints_per_conference: 3,
                tracks_per_endpoint: 2,
                ssrcs_per_track: 3,
                subscriptions_per_endpoint: 2,
            },
            IngressLimits::UNLIMITED,
        )
    }

    fn track(id: &str, ssrcs: &[u32]) -> Track {
        Track::new(id, TrackKind::Video, ssrcs)
    }

    fn sub(ep: &str, track: &str) -> Subscription {
        Subscription::new(ep, track)
    }

    fn routes(u: &Update) -> Arc<ConfRoutes> {
        match u {
            Update::Routes {
                routes: Some(r), ..
            } => r.clone(),
            other => panic!("expected routes, got {other:?}"),
        }
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("a"));
        assert!(valid_id(&"x".repeat(64)));
        assert!(!valid_id(&"x".repeat(65)));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id("é"));
        let mut m = model();
        assert_eq!(
            m.create_conference(Some("a/b".into())).err(),
            Some(ModelError::InvalidId { what: "conference" })
        );
        let (id, _) = m.create_conference(None).unwrap();
        assert!(valid_id(&id) && id.len() == RANDOM_ID_LEN);
    }

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let mut m = model();
        m.create_conference(Some("c".into())).unwrap();
        let (a, _) = m.create_endpoint("c", Some("a".into())).unwrap();
        m.delete_endpoint("c", "a").unwrap();
        let (b, _) = m.create_endpoint("c", Some("b".into())).unwrap();
        assert_eq!(a.ep, b.ep);
        assert_ne!(a.generation, b.generation);
        // a latch for the old generation is stale
        let now = Instant::now();
        let at: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(m.latched(a.ep, a.generation, at, now, now).is_empty());
        assert_eq!(m.latched(b.ep, b.generation, at, now, now).len(), 1);
        m.delete_conference("c").unwrap();
        let (_, ups) = m.create_conference(Some("d".into())).unwrap();
        assert!(ups.is_empty());
        assert_eq!(m.counts(now), Counts::default().with_conferences(1));
    }

    impl Counts {
        fn with_conferences(mut self, n: usize) -> Self {
            self.conferences = n;
            self
        }
    }

    #[test]
    fn routes_follow_tracks_and_subscriptions() {
        let mut m = model();
        m.create_conference(Some("c".into())).unwrap();
        let (p, _) = m.create_endpoint("c", Some("p".into())).unwrap();
        let (s, _) = m.create_endpoint("c", Some("s".into())).unwrap();
        // subscribing before the track exists is accepted and inactive
        let (_, ups) = m
            .set_subscriptions("c", "s", vec![sub("p", "cam")])
            .unwrap();
        assert!(routes(&ups[0]).is_empty());
        let info = m.conference("c", Instant::now()).unwrap();
        assert!(!info.endpoints[1].subscriptions[0].1);
        let (_, ups) = m
            .set_tracks("c", "p", vec![track("cam", &[1, 2]), track("mic", &[3])])
            .unwrap();
        let r = routes(&ups[0]);
        assert_eq!(r.get(1).unwrap().owner, p.ep);
        assert_eq!(r.get(1).unwrap().subscribers.as_ref(), &[s.ep]);
        assert_eq!(r.get(2).unwrap().subscribers.as_ref(), &[s.ep]);
        assert!(r.get(3).unwrap().subscribers.is_empty());
        // deleting the subscriber: routes first, then the removal
        let (_, ups) = m.delete_endpoint("c", "s").unwrap();
        assert!(routes(&ups[0]).get(1).unwrap().subscribers.is_empty());
        assert!(matches!(ups[1], Update::RemoveEndpoint { ep } if ep == s.ep));
    }

    #[test]
    fn conflicts_and_limits_change_nothing() {
        let mut m = model();
        m.create_conference(Some("c".into())).unwrap();
        m.create_endpoint("c", Some("a".into())).unwrap();
        m.create_endpoint("c", Some("b".into())).unwrap();
        m.set_tracks("c", "a", vec![track("cam", &[7])]).unwrap();
        assert_eq!(
            m.set_tracks("c", "b", vec![track("cam", &[7])]).err(),
            Some(ModelError::SsrcTaken { ssrc: 7 })
        );
        assert!(
            m.conference("c", Instant::now()).unwrap().endpoints[1]
                .tracks
                .is_empty()
        );
        assert_eq!(
            m.set_tracks("c", "b", vec![track("x", &[1]), track("x", &[2])])
                .err(),
            Some(ModelError::Invalid("track ids must be unique"))
        );
        assert!(matches!(
            m.set_tracks("c", "b", vec![track("x", &[1, 2, 3, 4])]),
            Err(ModelError::TooManySsrcs { max: 3 })
        ));
        assert!(matches!(
            m.set_tracks(
                "c",
                "b",
                vec![track("x", &[1]), track("y", &[2]), track("z", &[3])]
            ),
            Err(ModelError::TooManyTracks { max: 2 })
        ));
        assert!(matches!(
            m.set_subscriptions(
                "c",
                "b",
                vec![sub("a", "cam"), sub("a", "x"), sub("a", "y")]
            ),
            Err(ModelError::TooManySubscriptions { max: 2 })
        ));
        assert!(matches!(
            m.set_subscriptions("c", "b", vec![sub("b", "cam")]),
            Err(ModelError::Invalid(_))
        ));
        m.create_endpoint("c", None).unwrap();
        assert_eq!(
            m.create_endpoint("c", None).map(|_| ()),
            Err(ModelError::TooManyEndpoints { max: 3 })
        );
        assert_eq!(
            m.create_endpoint("c", Some("a".into())).map(|_| ()),
            Err(ModelError::EndpointExists)
        );
        m.create_conference(None).unwrap();
        assert_eq!(
            m.create_conference(None).map(|_| ()),
            Err(ModelError::TooManyConferences { max: 2 })
        );
        // the same SSRC in another conference is fine
        m.delete_conference("c").unwrap();
        m.create_conference(Some("c".into())).unwrap();
        m.create_endpoint("c", Some("a".into())).unwrap();
        m.set_tracks("c", "a", vec![track("cam", &[7])]).unwrap();
    }

    #[test]
    fn an_address_is_never_taken_across_conferences_while_held() {
        let mut m = model();
        m.create_conference(Some("c".into())).unwrap();
        m.create_conference(Some("d".into())).unwrap();
        let (a, _) = m.create_endpoint("c", Some("a".into())).unwrap();
        let (b, _) = m.create_endpoint("c", Some("b".into())).unwrap();
        let (x, _) = m.create_endpoint("d", Some("x".into())).unwrap();
        let now = Instant::now();
        let (w, elsewhere): (SocketAddr, SocketAddr) = (
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:4001".parse().unwrap(),
        );
        let until = now + Duration::from_secs(30);
        m.latched(a.ep, a.generation, w, until, now);
        m.latched(x.ep, x.generation, elsewhere, until, now);
        // x (another conference) is refused; the updates put a and x back where they are.
        let ups = m.latched(x.ep, x.generation, w, until, now);
        let at = |ep| {
            ups.iter().find_map(|u| match u {
                Update::Address { ep: e, addr, .. } if *e == ep => Some(addr.map(|(a, _)| a)),
                _ => None,
            })
        };
        assert_eq!(at(a.ep), Some(Some(w)));
        assert_eq!(at(x.ep), Some(Some(elsewhere)));
        let info = m.conference("c", now).unwrap();
        assert!(info.endpoints[0].latched);
        // b, in the same conference, may take it (the shard has the proof).
        assert_eq!(m.latched(b.ep, b.generation, w, until, now).len(), 1);
        let info = m.conference("c", now).unwrap();
        assert!(!info.endpoints[0].latched && info.endpoints[1].latched);
        // Once b's consent has lapsed, the address is free for x.
        let later = until + Duration::from_secs(1);
        let ups = m.latched(
            x.ep,
            x.generation,
            w,
            later + Duration::from_secs(30),
            later,
        );
        assert_eq!(ups.len(), 1);
        assert!(m.conference("d", later).unwrap().endpoints[0].latched);
    }

    #[test]
    fn latch_state_and_consent() {
        let mut m = model();
        m.create_conference(Some("c".into())).unwrap();
        let (a, _) = m.create_endpoint("c", Some("a".into())).unwrap();
        let (b, _) = m.create_endpoint("c", Some("b".into())).unwrap();
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let ups = m.latched(a.ep, a.generation, addr, now + Duration::from_secs(30), now);
        assert_eq!(ups.len(), 1);
        let info = m.conference("c", now).unwrap();
        assert!(info.endpoints[0].latched);
        assert_eq!(
            info.endpoints[0].consent_expires_in,
            Some(Duration::from_secs(30))
        );
        let later = m.conference("c", now + Duration::from_secs(31)).unwrap();
        assert!(!later.endpoints[0].latched);
        assert_eq!(later.endpoints[0].consent_expires_in, Some(Duration::ZERO));
        // A refresh of another address (a shard's stale view) changes nothing; one of
        // the current address extends consent and never shortens it.
        let elsewhere: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let refresh = now + Duration::from_secs(40);
        assert!(m.consent(a.ep, a.generation, elsewhere, refresh).is_none());
        assert!(m.consent(a.ep, a.generation + 1, addr, refresh).is_none());
        assert!(m.consent(a.ep, a.generation, addr, refresh).is_some());
        assert!(m.consent(a.ep, a.generation, addr, now).is_some());
        let info = m.conference("c", now).unwrap();
        assert_eq!(
            info.endpoints[0].consent_expires_in,
            Some(Duration::from_secs(40))
        );
        // b declares the same address: a loses it, as in the shards
        m.set_address("c", "b", addr).unwrap();
        let info = m.conference("c", now).unwrap();
        assert!(!info.endpoints[0].latched);
        assert!(info.endpoints[1].latched);
        assert_eq!(info.endpoints[1].consent_expires_in, None);
        assert_eq!(m.counts(now).latched, 1);
        let _ = b;
        assert!(matches!(
            m.set_address("c", "b", "0.0.0.0:5".parse().unwrap()),
            Err(ModelError::Invalid(_))
        ));
        assert!(matches!(
            m.set_address("c", "b", "127.0.0.1:0".parse().unwrap()),
            Err(ModelError::Invalid(_))
        ));
    }
}
