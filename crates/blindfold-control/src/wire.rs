//! The request and response bodies of the control API, exactly as they travel: the server
//! parses requests and writes responses with these types, the client the other way round,
//! and the OpenAPI document's schemas are derived from them.
//!
//! Owns field names, shapes and schema docs; must not validate beyond shape (limits and
//! meaning are the forwarder's model's) and must not change a field: other programs parse
//! this JSON. Request bodies refuse unknown fields.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/conferences` body: `{}` or `{"id": "..."}`, optionally with its settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConference {
    /// Caller-chosen id (1..=64 of `[A-Za-z0-9_-]`); random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Selective-forwarding settings from the start (e.g. speaker detection off before
    /// any audio level is read); the defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ConferenceSettings>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `PUT /v1/conferences/{conf}/settings` body, also part of a conference's state: what
/// the forwarder chooses for the conference's receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConferenceSettings {
    /// Read the audio level extension of audio tracks that declare it and identify the
    /// dominant speaker (events at `GET /v1/events`, last-N by speaker, top-K audio).
    /// Off: no audio level is read, no event is sent, top-K is ignored and last-N follows
    /// the join order. Default on. The price of on: the forwarder learns who speaks when.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub speaker_detection: bool,
    /// Default last-N: video from at most this many of the most recent speakers (plus
    /// pins) for endpoints that set none. Absent: every video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_n: Option<u32>,
    /// Default top-K audio: audio from at most this many of the currently loudest
    /// speakers for endpoints that set none. Absent: every audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// A created conference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// The conference id.
    pub id: String,
}

/// `POST /v1/conferences/{conf}/endpoints` body: `{}` or `{"id": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Caller-chosen id (1..=64 of `[A-Za-z0-9_-]`); random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// ICE-lite credentials for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ice {
    /// The forwarder's ufrag: the first half of the STUN USERNAME `ufrag:clientUfrag`.
    pub ufrag: String,
    /// The pwd keying MESSAGE-INTEGRITY.
    pub pwd: String,
}

/// A media address of the forwarder to send STUN and SRTP to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    /// IP address.
    #[schema(value_type = String, example = "192.0.2.10")]
    pub ip: IpAddr,
    /// UDP port.
    pub port: u16,
}

impl From<SocketAddr> for Candidate {
    fn from(a: SocketAddr) -> Self {
        Self {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

impl From<Candidate> for SocketAddr {
    fn from(c: Candidate) -> Self {
        SocketAddr::new(c.ip, c.port)
    }
}

/// A created endpoint: its id, ICE credentials and the forwarder's candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointCreated {
    /// The endpoint id.
    pub id: String,
    /// ICE credentials.
    pub ice: Ice,
    /// Where to send.
    pub candidates: Vec<Candidate>,
}

/// `PUT .../address` body: where a plain-RTP peer (recorder, gateway) receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    /// Unicast IP address.
    #[schema(value_type = String, example = "192.0.2.20")]
    pub ip: IpAddr,
    /// UDP port (1..=65535).
    pub port: u16,
}

impl From<SocketAddr> for AddressBody {
    fn from(a: SocketAddr) -> Self {
        Self {
            ip: a.ip(),
            port: a.port(),
        }
    }
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// Microphone audio.
    Audio,
    /// Camera video.
    Video,
    /// Screen share.
    Screen,
}

/// The RFC 8285 header extension ids a track's packets carry, chosen per call (1..=14
/// fit the one-byte form, up to 255 the two-byte form; the forwarder reads both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackExtensions {
    /// RFC 6464 client-to-mixer audio level (audio tracks): feeds speaker detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_level: Option<u8>,
    /// RFC 9626 video frame marking (video, screen): the track is forwarded selectively
    /// (last-N, layers, pause), each subscriber switching only at a key frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_marking: Option<u8>,
}

impl TrackExtensions {
    /// Neither extension.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackJson {
    /// Track id, unique within the endpoint.
    pub id: String,
    /// What it carries.
    pub kind: TrackKind,
    /// Its SSRCs (simulcast layers, RTX); none may belong to another endpoint of the
    /// conference. With `simulcast`, one per layer, lowest quality first (at most 4).
    pub ssrcs: Vec<u32>,
    /// Header extension ids its packets carry; absent: none is read.
    #[serde(default, skip_serializing_if = "TrackExtensions::is_empty")]
    pub extensions: TrackExtensions,
    /// The SSRCs are simulcast layers: each subscriber gets one (needs `frame_marking`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub simulcast: bool,
}

impl TrackJson {
    /// A track `id` of `kind` sent with `ssrcs`.
    pub fn new(id: impl Into<String>, kind: TrackKind, ssrcs: impl Into<Vec<u32>>) -> Self {
        Self {
            id: id.into(),
            kind,
            ssrcs: ssrcs.into(),
            extensions: TrackExtensions::default(),
            simulcast: false,
        }
    }

    /// With the audio level extension at `id`.
    pub fn with_audio_level(mut self, id: u8) -> Self {
        self.extensions.audio_level = Some(id);
        self
    }

    /// With frame marking at `id`; `simulcast` when the SSRCs are layers.
    pub fn with_frame_marking(mut self, id: u8, simulcast: bool) -> Self {
        self.extensions.frame_marking = Some(id);
        self.simulcast = simulcast;
        self
    }
}

/// `PUT .../tracks` body: the complete set of the endpoint's tracks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TracksBody {
    /// Replaces the previous set.
    pub tracks: Vec<TrackJson>,
}

/// One subscription: receive `track` of `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionJson {
    /// Publisher endpoint id (need not exist yet).
    pub endpoint: String,
    /// Its track id (need not exist yet).
    pub track: String,
    /// For a selectively forwarded track: the highest layer wanted (0 = lowest, up to
    /// 3); the forwarder sends the highest layer at or below it that the publisher
    /// sends, moving only at key frames. Absent: the track's highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// Subscribed, but nothing is sent (the "none" layer choice).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
}

impl SubscriptionJson {
    /// Receive `track` of `endpoint`.
    pub fn new(endpoint: impl Into<String>, track: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            track: track.into(),
            layer: None,
            paused: false,
        }
    }

    /// At most layer `layer`.
    pub fn with_layer(mut self, layer: Option<u8>) -> Self {
        self.layer = layer;
        self
    }

    /// Paused or not.
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }
}

/// `PUT .../endpoints/{ep}/receive` body, also part of an endpoint's state: what the
/// endpoint asks the forwarder to choose for it. Absent values take the conference's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveJson {
    /// Video from at most this many of the most recent speakers, plus `pins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_n: Option<u32>,
    /// Audio from at most this many of the currently loudest speakers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k_audio: Option<u32>,
    /// Endpoint ids whose video it always gets (need not exist yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
}

impl ReceiveJson {
    /// Nothing asked for.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One event of `GET /v1/events` (Server-Sent Events, `event: speaker`): a conference's
/// dominant speaker changed. A new listener first gets the current state of every
/// conference with detection on and a speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpeakerEvent {
    /// The conference id.
    pub conference: String,
    /// The endpoint id holding the floor.
    pub dominant: String,
    /// Every endpoint id by recency of holding the floor, most recent first; those that
    /// never did follow in join order. Last-N takes the first N that publish video.
    pub recent: Vec<String>,
}

/// `PUT .../subscriptions` body: the complete set of the endpoint's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsBody {
    /// Replaces the previous set.
    pub subscriptions: Vec<SubscriptionJson>,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionState {
    /// Publisher endpoint id.
    pub endpoint: String,
    /// Its track id.
    pub track: String,
    /// Whether the publisher and track exist now, so media flows.
    pub active: bool,
    /// The layer cap asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// Paused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
}

/// One endpoint of a conference. Addresses are never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EndpointState {
    /// The endpoint id.
    pub id: String,
    /// Whether it receives now: a declared address, or a STUN latch whose consent has
    /// not lapsed.
    pub latched: bool,
    /// For a STUN-latched endpoint, milliseconds until its consent lapses (0: lapsed,
    /// it no longer receives); `null` when unlatched or declared.
    pub consent_expires_in_ms: Option<u64>,
    /// Published tracks.
    pub tracks: Vec<TrackJson>,
    /// Subscriptions.
    pub subscriptions: Vec<SubscriptionState>,
    /// What it asked the forwarder to choose for it.
    #[serde(default, skip_serializing_if = "ReceiveJson::is_empty")]
    pub receive: ReceiveJson,
}

/// A conference with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConferenceState {
    /// The conference id.
    pub id: String,
    /// Its endpoints, sorted by id.
    pub endpoints: Vec<EndpointState>,
    /// Its selective-forwarding settings.
    #[serde(default)]
    pub settings: ConferenceSettings,
    /// The endpoint holding the floor, when detection is on and someone spoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dominant: Option<String>,
}

impl ConferenceState {
    /// The endpoint `id`, if present.
    pub fn endpoint(&self, id: &str) -> Option<&EndpointState> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// Whether it has exactly `n` endpoints and all of them are latched.
    pub fn all_latched(&self, n: usize) -> bool {
        self.endpoints.len() == n && self.endpoints.iter().all(|e| e.latched)
    }
}

/// One entry of the conference list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConferenceSummary {
    /// The conference id.
    pub id: String,
    /// How many endpoints it has.
    pub endpoints: usize,
}

/// All conferences, for a signalling service that restarted and resynchronises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConferenceList {
    /// Sorted by id.
    pub conferences: Vec<ConferenceSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn request_bodies_keep_their_json() {
        assert_eq!(s(&CreateConference::default()), "{}");
        assert_eq!(
            s(&CreateEndpoint {
                id: Some("a".into())
            }),
            r#"{"id":"a"}"#
        );
        assert_eq!(
            s(&CreateConference {
                id: Some("c".into()),
                settings: None
            }),
            r#"{"id":"c"}"#
        );
        assert_eq!(
            s(&TracksBody {
                tracks: vec![TrackJson::new("mic", TrackKind::Audio, [7])]
            }),
            r#"{"tracks":[{"id":"mic","kind":"audio","ssrcs":[7]}]}"#
        );
        assert_eq!(
            s(&SubscriptionsBody {
                subscriptions: vec![SubscriptionJson::new("a", "mic")]
            }),
            r#"{"subscriptions":[{"endpoint":"a","track":"mic"}]}"#
        );
        assert_eq!(
            s(&AddressBody::from(
                "192.0.2.1:5000".parse::<SocketAddr>().unwrap()
            )),
            r#"{"ip":"192.0.2.1","port":5000}"#
        );
    }

    #[test]
    fn selective_fields_are_additive() {
        // Without them, the JSON is what it was.
        let t: TrackJson =
            serde_json::from_str(r#"{"id":"cam","kind":"video","ssrcs":[1,2,3]}"#).unwrap();
        assert_eq!(t, TrackJson::new("cam", TrackKind::Video, [1, 2, 3]));
        let t = t.with_frame_marking(3, true);
        assert_eq!(
            s(&t),
            r#"{"id":"cam","kind":"video","ssrcs":[1,2,3],"extensions":{"frame_marking":3},"simulcast":true}"#
        );
        assert_eq!(
            s(&SubscriptionJson::new("a", "cam").with_layer(Some(1))),
            r#"{"endpoint":"a","track":"cam","layer":1}"#
        );
        assert_eq!(s(&ConferenceSettings::default()), "{}");
        let off: ConferenceSettings =
            serde_json::from_str(r#"{"speaker_detection":false,"last_n":5}"#).unwrap();
        assert!(!off.speaker_detection && off.last_n == Some(5));
        assert!(
            serde_json::from_str::<TrackJson>(
                r#"{"id":"c","kind":"video","ssrcs":[1],"extensions":{"colour":1}}"#
            )
            .is_err()
        );
        // A state from a forwarder without these fields still parses.
        let st: ConferenceState = serde_json::from_str(r#"{"id":"c","endpoints":[]}"#).unwrap();
        assert!(st.settings.speaker_detection && st.dominant.is_none());
    }

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<CreateConference>(r#"{"id":"x","colour":1}"#).is_err());
        assert!(serde_json::from_str::<TracksBody>(r#"{"tracks":[],"x":1}"#).is_err());
        assert_eq!(
            serde_json::from_str::<CreateConference>("{}").unwrap(),
            CreateConference::default()
        );
    }
}
