//! The signalling wire protocol, version 1: JSON text frames over one WebSocket per
//! participant. Shared by the service ([`crate`]) and the participant (`blindfold-client`).
//!
//! Owns the message types and their validation only; it must not touch sockets, the
//! forwarder or any key. Every id and key field is lowercase hex: the service accepts only
//! values shaped like ephemeral ids (16 octets), so a client cannot hand it a user name.

use serde::{Deserialize, Serialize};

/// The protocol version every frame carries as `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Octets of an ephemeral id (conference or participant) before hex encoding.
pub const EPHEMERAL_ID_LEN: usize = 16;
/// Largest key-transport public key the service relays, in octets.
pub const MAX_KEY_LEN: usize = 256;
/// Largest sealed key message the service relays, in octets.
pub const MAX_KEY_MESSAGE_LEN: usize = 4096;
/// Largest text frame the service reads.
pub const MAX_FRAME: usize = 64 * 1024;

/// A frame: the version plus one message. Unknown fields are ignored so a v1 peer can add
/// optional fields without breaking older ones; an unknown `type` or `v` is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame<M> {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub v: u32,
    /// The message, tagged by `"type"`.
    #[serde(flatten)]
    pub msg: M,
}

impl<M> Frame<M> {
    /// Wraps a message in a current-version frame.
    pub fn new(msg: M) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            msg,
        }
    }
}

/// Kind of a published track (the forwarder's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Microphone.
    Audio,
    /// Camera.
    Video,
    /// Screen share.
    Screen,
}

/// The RFC 8285 header extension ids a track's packets carry (chosen per call by the
/// participant; the forwarder reads them in the clear, never the payload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extensions {
    /// RFC 6464 audio level (audio tracks): speaker detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_level: Option<u8>,
    /// RFC 9626 frame marking (video, screen): last-N, layers and pause, switching only
    /// at key frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_marking: Option<u8>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A track a participant publishes: a name local to the participant and its SSRCs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// Track name, unique per participant (e.g. "mic", "cam").
    pub id: String,
    /// Audio, video or screen.
    pub kind: TrackKind,
    /// The SSRCs the participant sends this track with (random per call); with
    /// `simulcast`, one per layer, lowest first.
    pub ssrcs: Vec<u32>,
    /// Header extension ids its packets carry.
    #[serde(default, skip_serializing_if = "Extensions::is_empty")]
    pub extensions: Extensions,
    /// The SSRCs are simulcast layers (needs frame marking).
    #[serde(default, skip_serializing_if = "is_false")]
    pub simulcast: bool,
}

impl Track {
    /// A plain track.
    pub fn new(id: impl Into<String>, kind: TrackKind, ssrcs: Vec<u32>) -> Self {
        Self {
            id: id.into(),
            kind,
            ssrcs,
            extensions: Extensions::default(),
            simulcast: false,
        }
    }
}

/// One track of one participant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrackRef {
    /// Ephemeral participant id.
    pub participant: String,
    /// Track name.
    pub track: String,
}

/// What participant to participant the service tells about a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Ephemeral participant id.
    pub participant: String,
    /// Join order the service assigns (lower joined earlier); the key schedule picks the
    /// key generator from it, so every member must see the same numbers.
    pub order: u64,
    /// Key-transport public key (hex), e.g. X25519 for HPKE.
    pub key: String,
    /// Opaque proof binding the key to the call (hex), checked by members, not the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_proof: Option<String>,
    /// Tracks it publishes.
    #[serde(default)]
    pub tracks: Vec<Track>,
}

/// ICE credentials of the participant's endpoint on the forwarder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ice {
    /// Forwarder ufrag (first half of the STUN USERNAME).
    pub ufrag: String,
    /// STUN MESSAGE-INTEGRITY key.
    pub pwd: String,
}

/// A forwarder media address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// IP address.
    pub ip: String,
    /// UDP port.
    pub port: u16,
}

/// Participant to service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter a call. Must be the first message, and only once.
    Join {
        /// Ephemeral conference id (32 hex digits).
        conference: String,
        /// Ephemeral participant id (32 hex digits).
        participant: String,
        /// Key-transport public key (hex).
        key: String,
        /// Optional opaque proof for the other members (hex).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_proof: Option<String>,
    },
    /// Replace the set of tracks this participant publishes.
    Publish {
        /// The tracks.
        tracks: Vec<Track>,
    },
    /// Choose what to receive: `null` (the default) is every track of every other member;
    /// a list narrows it to those tracks.
    Subscribe {
        /// The tracks, or `null` for all.
        to: Option<Vec<TrackRef>>,
    },
    /// A sealed key message for one member; relayed as is.
    Key {
        /// Recipient's ephemeral participant id.
        to: String,
        /// Sealed message (hex).
        message: String,
    },
    /// What the forwarder should choose for this participant: the highest video layer
    /// it wants (`null`: the best), video from at most `last_n` recent speakers plus the
    /// `pins`, audio from at most `top_k_audio` speakers (`null`: no limit). Replaces
    /// the previous choice.
    Receive {
        /// Highest simulcast layer (0 = lowest).
        #[serde(default)]
        layer: Option<u8>,
        /// Last-N video.
        #[serde(default)]
        last_n: Option<u32>,
        /// Top-K audio.
        #[serde(default)]
        top_k_audio: Option<u32>,
        /// Participants whose video it always gets.
        #[serde(default)]
        pins: Vec<String>,
    },
    /// Leave the call; the service answers `left` once the endpoint is gone.
    Leave,
}

/// Service to participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded: this member's view, the others, and how to reach the forwarder.
    Joined {
        /// This participant as the others see it.
        you: MemberInfo,
        /// The other members, with their tracks.
        members: Vec<MemberInfo>,
        /// ICE credentials for STUN latching.
        ice: Ice,
        /// Forwarder media addresses.
        candidates: Vec<Candidate>,
    },
    /// Another participant joined.
    MemberJoined {
        /// The newcomer.
        member: MemberInfo,
    },
    /// A participant left (its endpoint is already gone from the forwarder).
    MemberLeft {
        /// Its ephemeral id.
        participant: String,
    },
    /// A member's tracks changed.
    Tracks {
        /// Its ephemeral id.
        participant: String,
        /// The full set.
        tracks: Vec<Track>,
    },
    /// A sealed key message from another member.
    Key {
        /// Sender's ephemeral id, as the service saw it (the seal authenticates it).
        from: String,
        /// Sealed message (hex).
        message: String,
    },
    /// The forwarder holds the tracks of the last `publish`: media sent from now on is
    /// forwarded (earlier packets would be dropped as coming from SSRCs it does not own).
    Published,
    /// The forwarder's speaker detection: who holds the floor now, and every member by
    /// recency of holding it (most recent first; those who never did, in join order).
    /// Last-N takes the first N members of `recent` that publish selectively forwarded
    /// video, so a participant can tell which videos it should be getting.
    Speakers {
        /// The dominant speaker.
        dominant: String,
        /// Members by recency.
        recent: Vec<String>,
    },
    /// The leave is complete: the forwarder no longer sends to this participant.
    Left,
    /// A request was refused.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail (never contains ids).
        message: String,
    },
}

/// Why the service refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, wrong version, unknown type or a malformed field.
    BadRequest,
    /// A message other than `join` before joining, or `join` twice.
    WrongState,
    /// The participant id is already in the conference.
    ParticipantTaken,
    /// The key message names a recipient that is not a member.
    UnknownRecipient,
    /// The forwarder refused or could not be reached.
    Forwarder,
    /// No room: the forwarders are full (conferences or endpoints), or the service has as
    /// many connections as it takes. Retry later; nothing is wrong with the request.
    Capacity,
    /// This source address holds as many connections, conferences or unproven joins as
    /// the service allows one address.
    SourceLimit,
    /// No `join` arrived in time after the connection opened.
    JoinTimeout,
}

/// A field of a message is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A version this implementation does not speak.
    #[error("unsupported protocol version {0}")]
    Version(u32),
    /// A field has the wrong shape.
    #[error("bad field `{0}`")]
    Field(&'static str),
}

/// Whether `s` is an ephemeral id: exactly 32 lowercase hex digits.
pub fn is_ephemeral_id(s: &str) -> bool {
    s.len() == 2 * EPHEMERAL_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_hex_up_to(s: &str, max_octets: usize) -> bool {
    !s.is_empty()
        && s.len().is_multiple_of(2)
        && s.len() <= 2 * max_octets
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn valid_track_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses and validates a participant's frame.
pub fn parse_client(text: &str) -> Result<ClientMessage, ProtoError> {
    let frame: Frame<ClientMessage> =
        serde_json::from_str(text).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if frame.v != PROTOCOL_VERSION {
        return Err(ProtoError::Version(frame.v));
    }
    validate(&frame.msg)?;
    Ok(frame.msg)
}

fn validate(msg: &ClientMessage) -> Result<(), ProtoError> {
    match msg {
        ClientMessage::Join {
            conference,
            participant,
            key,
            key_proof,
        } => {
            if !is_ephemeral_id(conference) {
                return Err(ProtoError::Field("conference"));
            }
            if !is_ephemeral_id(participant) {
                return Err(ProtoError::Field("participant"));
            }
            if !is_hex_up_to(key, MAX_KEY_LEN) {
                return Err(ProtoError::Field("key"));
            }
            if key_proof.as_deref().is_some_and(|p| !is_hex_up_to(p, 64)) {
                return Err(ProtoError::Field("key_proof"));
            }
        }
        ClientMessage::Publish { tracks } => {
            if tracks.len() > 16 {
                return Err(ProtoError::Field("tracks"));
            }
            let mut names = std::collections::HashSet::new();
            for t in tracks {
                if !valid_track_name(&t.id) || !names.insert(&t.id) {
                    return Err(ProtoError::Field("tracks.id"));
                }
                if t.ssrcs.is_empty() || t.ssrcs.len() > 8 {
                    return Err(ProtoError::Field("tracks.ssrcs"));
                }
                if t.extensions.audio_level == Some(0) || t.extensions.frame_marking == Some(0) {
                    return Err(ProtoError::Field("tracks.extensions"));
                }
            }
        }
        ClientMessage::Receive { layer, pins, .. } => {
            if layer.is_some_and(|l| l > 3) {
                return Err(ProtoError::Field("layer"));
            }
            if pins.len() > 512 || pins.iter().any(|p| !is_ephemeral_id(p)) {
                return Err(ProtoError::Field("pins"));
            }
        }
        ClientMessage::Subscribe { to } => {
            if let Some(list) = to {
                if list.len() > 512 {
                    return Err(ProtoError::Field("to"));
                }
                for r in list {
                    if !is_ephemeral_id(&r.participant) || !valid_track_name(&r.track) {
                        return Err(ProtoError::Field("to"));
                    }
                }
            }
        }
        ClientMessage::Key { to, message } => {
            if !is_ephemeral_id(to) {
                return Err(ProtoError::Field("to"));
            }
            if !is_hex_up_to(message, MAX_KEY_MESSAGE_LEN) {
                return Err(ProtoError::Field("message"));
            }
        }
        ClientMessage::Leave => {}
    }
    Ok(())
}

/// Parses a service frame (the participant's side).
pub fn parse_server(text: &str) -> Result<ServerMessage, ProtoError> {
    let frame: Frame<ServerMessage> =
        serde_json::from_str(text).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if frame.v != PROTOCOL_VERSION {
        return Err(ProtoError::Version(frame.v));
    }
    Ok(frame.msg)
}

/// Serializes a message as a current-version frame.
pub fn encode<M: Serialize>(msg: M) -> String {
    // Invariant: these types are plain data with string keys; serializing cannot fail.
    serde_json::to_string(&Frame::new(msg)).expect("protocol messages serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn join_round_trips_with_version_and_tag() {
        let msg = ClientMessage::Join {
            conference: ID.into(),
            participant: ID.into(),
            key: "ab".repeat(32),
            key_proof: None,
        };
        let text = encode(&msg);
        assert!(
            text.contains(r#""v":1"#) && text.contains(r#""type":"join""#),
            "{text}"
        );
        assert_eq!(parse_client(&text).unwrap(), msg);
    }

    #[test]
    fn leave_and_server_messages_parse() {
        assert_eq!(
            parse_client(r#"{"v":1,"type":"leave"}"#).unwrap(),
            ClientMessage::Leave
        );
        let left = encode(ServerMessage::Left);
        assert_eq!(parse_server(&left).unwrap(), ServerMessage::Left);
        assert_eq!(
            encode(ServerMessage::Published),
            r#"{"v":1,"type":"published"}"#
        );
        let full = encode(ServerMessage::Error {
            code: ErrorCode::Capacity,
            message: String::new(),
        });
        assert!(full.contains(r#""code":"capacity""#), "{full}");
    }

    #[test]
    fn refuses_wrong_version_and_non_ephemeral_ids() {
        assert_eq!(
            parse_client(r#"{"v":2,"type":"leave"}"#),
            Err(ProtoError::Version(2))
        );
        let named = format!(
            r#"{{"v":1,"type":"join","conference":"{ID}","participant":"alice@example.org","key":"abcd"}}"#
        );
        assert_eq!(parse_client(&named), Err(ProtoError::Field("participant")));
        let upper = ID.to_uppercase();
        let msg = format!(
            r#"{{"v":1,"type":"join","conference":"{upper}","participant":"{ID}","key":"abcd"}}"#
        );
        assert_eq!(parse_client(&msg), Err(ProtoError::Field("conference")));
        assert!(parse_client(r#"{"v":1,"type":"dance"}"#).is_err());
        assert!(parse_client("not json").is_err());
    }

    #[test]
    fn selective_forwarding_fields_are_additive() {
        let old = r#"{"v":1,"type":"publish","tracks":[{"id":"mic","kind":"audio","ssrcs":[1]}]}"#;
        let ClientMessage::Publish { tracks } = parse_client(old).unwrap() else {
            panic!("publish");
        };
        assert_eq!(tracks[0], Track::new("mic", TrackKind::Audio, vec![1]));
        let receive = format!(r#"{{"v":1,"type":"receive","layer":1,"last_n":4,"pins":["{ID}"]}}"#);
        assert!(matches!(
            parse_client(&receive).unwrap(),
            ClientMessage::Receive {
                layer: Some(1),
                last_n: Some(4),
                ..
            }
        ));
        let named = r#"{"v":1,"type":"receive","pins":["alice"]}"#;
        assert_eq!(parse_client(named), Err(ProtoError::Field("pins")));
        let s = encode(ServerMessage::Speakers {
            dominant: ID.into(),
            recent: vec![ID.into()],
        });
        assert!(matches!(
            parse_server(&s).unwrap(),
            ServerMessage::Speakers { .. }
        ));
    }

    #[test]
    fn refuses_bad_tracks_and_key_messages() {
        let dup = r#"{"v":1,"type":"publish","tracks":[{"id":"mic","kind":"audio","ssrcs":[1]},{"id":"mic","kind":"audio","ssrcs":[2]}]}"#;
        assert_eq!(parse_client(dup), Err(ProtoError::Field("tracks.id")));
        let empty = r#"{"v":1,"type":"publish","tracks":[{"id":"mic","kind":"audio","ssrcs":[]}]}"#;
        assert_eq!(parse_client(empty), Err(ProtoError::Field("tracks.ssrcs")));
        let odd = format!(r#"{{"v":1,"type":"key","to":"{ID}","message":"abc"}}"#);
        assert_eq!(parse_client(&odd), Err(ProtoError::Field("message")));
    }
}
