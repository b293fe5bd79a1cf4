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

/// `POST /v1/conferences` body: `{}` or `{"id": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConference {
    /// Caller-chosen id (1..=64 of `[A-Za-z0-9_-]`); random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
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

/// One published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackJson {
    /// Track id, unique within the endpoint.
    pub id: String,
    /// What it carries.
    pub kind: TrackKind,
    /// Its SSRCs (simulcast layers, RTX); none may belong to another endpoint of the
    /// conference.
    pub ssrcs: Vec<u32>,
}

impl TrackJson {
    /// A track `id` of `kind` sent with `ssrcs`.
    pub fn new(id: impl Into<String>, kind: TrackKind, ssrcs: impl Into<Vec<u32>>) -> Self {
        Self {
            id: id.into(),
            kind,
            ssrcs: ssrcs.into(),
        }
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
}

impl SubscriptionJson {
    /// Receive `track` of `endpoint`.
    pub fn new(endpoint: impl Into<String>, track: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            track: track.into(),
        }
    }
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
}

/// A conference with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConferenceState {
    /// The conference id.
    pub id: String,
    /// Its endpoints, sorted by id.
    pub endpoints: Vec<EndpointState>,
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
    fn request_bodies_refuse_unknown_fields() {
        assert!(serde_json::from_str::<CreateConference>(r#"{"id":"x","colour":1}"#).is_err());
        assert!(serde_json::from_str::<TracksBody>(r#"{"tracks":[],"x":1}"#).is_err());
        assert_eq!(
            serde_json::from_str::<CreateConference>("{}").unwrap(),
            CreateConference::default()
        );
    }
}
