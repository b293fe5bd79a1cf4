//! blindfold-e2ee: the participants' end-to-end encryption core: an MLS group (RFC 9420,
//! through openmls) for membership, SRTP (AEAD_AES_128_GCM) under media keys exported from
//! the group's epochs, and ephemeral identifiers.
//!
//! Owns everything that needs a key. Must not touch sockets, clocks or signalling (time is
//! an argument, messages are returned). No server crate may depend on it:
//! `blindfold-forwarder`'s dependency graph holding no AEAD, HPKE, MLS or e2ee crate is
//! checked by `tests/forwarder_keyless.rs`.
//!
//! # From group events to protect/unprotect
//! ```no_run
//! use blindfold_e2ee::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. The call secret arrives out of band; the conference id derives from it, the
//! //    participant id is fresh for this join.
//! let call = CallSecret::from_bytes([7; 32]);
//! let me = ParticipantId::random(&mut rand::rng());
//! let mut session = E2eeSession::new(ScheduleConfig::default(), &call, me)?;
//! // 2. Join through signalling with a KeyPackage; alone, start the group, otherwise a
//! //    member's Commit adds us and signalling hands us the Welcome.
//! let key_package = session.key_package()?;
//! let now = 0; // the caller's monotonic clock, in ms
//! session.start_alone(now)?;
//! // 3. Feed what signalling delivers, drain outputs, honour the timer.
//! # let bytes: Vec<u8> = vec![];
//! session.handle_input(Input::Handshake(&bytes), now);
//! while let Some(out) = session.poll_output() {
//!     match out {
//!         Output::SendHandshake { message, welcome } => { /* signalling.send(...) */ }
//!         Output::Epoch { code, .. } => { /* show the verification code */ }
//!         Output::State(state) => { /* show Sending / Stalled */ }
//!         _ => {}
//!     }
//! }
//! if let Some(at) = session.poll_timeout() { /* call session.handle_timeout(at) then */ }
//! // 4. Media: protect in place with RTP_OVERHEAD spare octets; unprotect naming the
//! //    sender that signalling maps the SSRC to.
//! let mut packet = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
//! session.protect_rtp_vec(&mut packet)?;
//! # let _ = key_package; Ok(()) }
//! ```
//! - [`group::MlsMember`] is the MLS client (credential, KeyPackages, admission, commits);
//!   [`E2eeSession`] decides who commits when and fails closed ([`session`] documents the
//!   rules); [`KeySchedule`] turns epoch secrets into ratcheted per-sender SRTP keys
//!   ([`schedule`] documents the design and why no two senders share a (key, nonce)).
//! - [`SrtpKeys`], [`SrtpSender`] and [`SrtpReceiver`] are usable on their own (e.g. by
//!   the load tool) for raw SRTP with or without an MKI.
//! - [`keylog_line`] formats `SRTP <ssrc> <epoch> <key> <salt>` for `--key-log`.

pub mod frames;
pub mod group;
pub mod ids;
pub mod schedule;
pub mod session;
pub mod sim;
pub mod srtp;

pub use frames::{
    FrameError, SFRAME_SUITE, SframeBaseKey, SframeSender, clear_prefix, frame_kid, sframe_kid,
    sframe_open, sframe_open_with_meta, split_sframe_kid,
};
pub use group::{
    CIPHERSUITE, EpochChange, GroupError, MEDIA_EXPORTER_LABEL, MlsMember, Processed,
    verification_code,
};
pub use ids::{
    BadId, CallSecret, ConferenceId, ID_LEN, ParticipantId, conference_id_for, random_cname,
    random_ssrc,
};
pub use schedule::{KeyEvent, KeySchedule, ScheduleConfig, SenderMaster};
pub use session::{E2eeError, E2eeSession, Input, Output, Refusals, SendState, StallReason};
pub use srtp::{
    EpochId, MKI_LEN, OpenedRtcp, REPLAY_WINDOW, RTCP_OVERHEAD, RTP_OVERHEAD, SrtpError, SrtpKeys,
    SrtpReceiver, SrtpSender, TAG_LEN, keylog_line, read_mki, rtcp_needs_encryption,
};
