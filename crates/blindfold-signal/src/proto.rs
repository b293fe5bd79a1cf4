//! The signalling wire protocol, version 1: JSON text frames over one WebSocket per
//! participant. Shared by the service ([`crate`]) and the participant (`blindfold-client`).
//!
//! Owns the message types and their validation only; it must not touch sockets, the
//! forwarder or any key. Every id and byte field is lowercase hex: the service accepts only
//! ids shaped like ephemeral ids (16 octets), so a client cannot hand it a user name. MLS
//! messages travel as hex inside JSON text frames; [`MAX_FRAME`] is sized for a Welcome
//! to a full conference.

use serde::{Deserialize, Serialize};

/// The protocol version every frame carries as `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Octets of an ephemeral id (conference or participant) before hex encoding.
pub const EPHEMERAL_ID_LEN: usize = 16;
/// Largest MLS message (KeyPackage, Commit, proposal or Welcome) the service relays, in
/// octets. A Welcome to a 200-member group is ~52 KB; this leaves room for 255 members.
pub const MAX_MLS_MESSAGE_LEN: usize = 128 * 1024;
/// Largest text frame the service reads: an MLS message in hex plus its JSON envelope.
pub const MAX_FRAME: usize = 2 * MAX_MLS_MESSAGE_LEN + 8 * 1024;
/// Octets of the service's join challenge.
pub const CHALLENGE_LEN: usize = 32;
/// Octets of a join proof.
pub const JOIN_PROOF_LEN: usize = 32;
/// Octets of a conference's join key.
pub const JOIN_KEY_LEN: usize = 32;
/// Most recipients of one Welcome.
pub const MAX_WELCOME_RECIPIENTS: usize = 64;

const LABEL_CONFERENCE: &[u8] = b"blindfold/v1 conference id";
const LABEL_JOIN_PROOF: &[u8] = b"blindfold/v1 join proof";

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

/// What the service tells participants about a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Ephemeral participant id.
    pub participant: String,
    /// Join order the service assigns (lower joined earlier); informational only: the
    /// group's membership and who commits are the MLS group's.
    pub order: u64,
    /// Tracks it publishes.
    #[serde(default)]
    pub tracks: Vec<Track>,
}

/// A Welcome to hand to the participants a Commit adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelcomeOut {
    /// Ephemeral ids of the participants it adds.
    pub to: Vec<String>,
    /// The MLS Welcome (hex).
    pub message: String,
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
    /// Enter a call, answering the service's `challenge`. Must come first, and only once.
    Join {
        /// Ephemeral conference id (32 hex digits).
        conference: String,
        /// Ephemeral participant id (32 hex digits), fresh for this join.
        participant: String,
        /// [`join_proof`] over this connection's challenge (hex).
        proof: String,
        /// The participant's MLS KeyPackage (hex), relayed to the members as is.
        key_package: String,
        /// The conference's join key (hex), sent only when the service answered
        /// `conference_unknown`: the conference id commits to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        join_key: Option<String>,
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
    /// An MLS handshake message (Commit or proposal, hex). The service keeps the first
    /// Commit per epoch and broadcasts it to every member, the sender included, with the
    /// Welcome going to the participants it adds; proposals go to the others.
    Handshake {
        /// The MLSMessage (hex).
        message: String,
        /// The Welcome of a Commit that adds members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        welcome: Option<WelcomeOut>,
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
    /// The first frame on a connection: the challenge a join must answer.
    Challenge {
        /// Random octets (hex), fresh per connection.
        nonce: String,
    },
    /// The join succeeded: this member's view, the others, and how to reach the forwarder.
    /// With no other member, the joiner starts the group; otherwise it waits for a Welcome.
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
    /// Another participant joined and asks the group to add it.
    MemberJoined {
        /// The newcomer.
        member: MemberInfo,
        /// Its MLS KeyPackage (hex).
        key_package: String,
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
    /// An MLS handshake message in the service's order.
    Handshake {
        /// Sender's ephemeral id, as the service saw it (MLS authenticates the real one).
        from: String,
        /// The MLSMessage (hex).
        message: String,
    },
    /// A Welcome for this participant.
    Welcome {
        /// The MLS Welcome (hex).
        message: String,
    },
    /// The forwarder holds the tracks of the last `publish`: media sent from now on is
    /// forwarded (earlier packets would be dropped as coming from SSRCs it does not own).
    Published,
    /// The call moved to another forwarder (its old one was lost): send media there and
    /// latch again with these credentials. The group and its keys are unchanged.
    Moved {
        /// ICE credentials of this participant's new endpoint.
        ice: Ice,
        /// The new forwarder's media addresses.
        candidates: Vec<Candidate>,
    },
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
    /// The participant id is in the conference or was in it before.
    ParticipantTaken,
    /// The join proof does not verify for this connection's challenge.
    BadProof,
    /// The service holds no join key for this conference: join again with `join_key`.
    ConferenceUnknown,
    /// A Commit for an epoch that already has one (or is out of order): another won.
    StaleCommit,
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
            proof,
            key_package,
            join_key,
        } => {
            if !is_ephemeral_id(conference) {
                return Err(ProtoError::Field("conference"));
            }
            if !is_ephemeral_id(participant) {
                return Err(ProtoError::Field("participant"));
            }
            if proof.len() != 2 * JOIN_PROOF_LEN || !is_hex_up_to(proof, JOIN_PROOF_LEN) {
                return Err(ProtoError::Field("proof"));
            }
            if !is_hex_up_to(key_package, MAX_MLS_MESSAGE_LEN) {
                return Err(ProtoError::Field("key_package"));
            }
            if join_key
                .as_deref()
                .is_some_and(|k| k.len() != 2 * JOIN_KEY_LEN || !is_hex_up_to(k, JOIN_KEY_LEN))
            {
                return Err(ProtoError::Field("join_key"));
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
        ClientMessage::Handshake { message, welcome } => {
            if !is_hex_up_to(message, MAX_MLS_MESSAGE_LEN) {
                return Err(ProtoError::Field("message"));
            }
            if let Some(w) = welcome {
                if w.to.is_empty()
                    || w.to.len() > MAX_WELCOME_RECIPIENTS
                    || !w.to.iter().all(|t| is_ephemeral_id(t))
                {
                    return Err(ProtoError::Field("welcome.to"));
                }
                if !is_hex_up_to(&w.message, MAX_MLS_MESSAGE_LEN) {
                    return Err(ProtoError::Field("welcome.message"));
                }
            }
        }
        ClientMessage::Leave => {}
    }
    Ok(())
}

/// The conference id a join key commits to: `SHA-256(len ‖ label ‖ join key)[..16]` in hex
/// (the participants derive both from the call secret; `blindfold_e2ee::ids` has the same
/// formula, and a client test checks the two agree).
pub fn conference_id_for(join_key: &[u8; JOIN_KEY_LEN]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(
        u32::try_from(LABEL_CONFERENCE.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    h.update(LABEL_CONFERENCE);
    h.update(join_key);
    hex::encode(&h.finalize()[..EPHEMERAL_ID_LEN])
}

/// `HMAC-SHA256(join key, label ‖ challenge ‖ conference ‖ participant)`, every field
/// length-prefixed: proves knowledge of the call secret for this connection only.
pub fn join_proof(
    join_key: &[u8; JOIN_KEY_LEN],
    challenge: &[u8],
    conference: &str,
    participant: &str,
) -> [u8; JOIN_PROOF_LEN] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(join_key)
        .expect("HMAC takes any key length");
    for part in [
        LABEL_JOIN_PROOF,
        challenge,
        conference.as_bytes(),
        participant.as_bytes(),
    ] {
        mac.update(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Checks a join proof in constant time.
pub fn verify_join_proof(
    join_key: &[u8; JOIN_KEY_LEN],
    challenge: &[u8],
    conference: &str,
    participant: &str,
    proof: &[u8],
) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(
        join_proof(join_key, challenge, conference, participant)
            .as_slice()
            .ct_eq(proof),
    )
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
            proof: "ab".repeat(32),
            key_package: "cd".repeat(300),
            join_key: None,
        };
        let text = encode(&msg);
        assert!(
            text.contains(r#""v":1"#) && text.contains(r#""type":"join""#),
            "{text}"
        );
        assert_eq!(parse_client(&text).unwrap(), msg);
    }

    #[test]
    fn join_proofs_bind_challenge_conference_and_participant() {
        let key = [7u8; 32];
        let p = join_proof(&key, b"challenge-1", ID, ID);
        assert!(verify_join_proof(&key, b"challenge-1", ID, ID, &p));
        assert!(!verify_join_proof(&key, b"challenge-2", ID, ID, &p));
        assert!(!verify_join_proof(&[8; 32], b"challenge-1", ID, ID, &p));
        let other = "ffeeddccbbaa99887766554433221100";
        assert!(!verify_join_proof(&key, b"challenge-1", ID, other, &p));
        assert!(!verify_join_proof(&key, b"challenge-1", other, ID, &p));
        assert_ne!(conference_id_for(&key), conference_id_for(&[8; 32]));
        assert!(is_ephemeral_id(&conference_id_for(&key)));
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
        let proof = "ab".repeat(32);
        let named = format!(
            r#"{{"v":1,"type":"join","conference":"{ID}","participant":"alice@example.org","proof":"{proof}","key_package":"abcd"}}"#
        );
        assert_eq!(parse_client(&named), Err(ProtoError::Field("participant")));
        let upper = ID.to_uppercase();
        let msg = format!(
            r#"{{"v":1,"type":"join","conference":"{upper}","participant":"{ID}","proof":"{proof}","key_package":"abcd"}}"#
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
        let odd = r#"{"v":1,"type":"handshake","message":"abc"}"#;
        assert_eq!(parse_client(odd), Err(ProtoError::Field("message")));
        let nobody =
            r#"{"v":1,"type":"handshake","message":"ab","welcome":{"to":[],"message":"ab"}}"#;
        assert_eq!(parse_client(nobody), Err(ProtoError::Field("welcome.to")));
    }
}
