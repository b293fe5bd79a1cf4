//! blindfold-e2ee: the participants' end-to-end encryption core: SRTP (AEAD_AES_128_GCM)
//! under a rotating group key, key messages sealed per recipient, and ephemeral
//! identifiers.
//!
//! Owns everything that needs a key. Must not touch sockets, clocks or signalling (time is
//! an argument, messages are returned). No server crate may depend on it:
//! `blindfold-forwarder`'s dependency graph holding no AEAD, HPKE or e2ee crate is checked
//! by `tests/forwarder_keyless.rs`.
//!
//! # From membership events to protect/unprotect
//! ```no_run
//! use blindfold_e2ee::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. The call secret arrives through the sealed channel; ids derive from it.
//! let call = CallSecret::from_bytes([7; 32]);
//! let me = call.participant_id(b"alice", b"laptop");
//! let keys = KeyPair::generate(&mut rand::rng());
//! // 2. Signalling admits us with a join order and the current roster.
//! let member = Member { id: me, joined_at: 42, transport_key: keys.public_bytes().to_vec() };
//! let roster: Vec<Member> = Vec::new();
//! let transport = HpkeTransport::new(me, keys, system_rng());
//! let now = 0; // the caller's monotonic clock, in ms
//! let schedule = KeySchedule::new(ScheduleConfig::default(), &member, roster, transport,
//!                                 system_rng(), now)?;
//! let mut session = E2eeSession::new(schedule);
//! // 3. Feed events, drain outputs, honour the timer.
//! # let (bob, bytes): (ParticipantId, Vec<u8>) = (me, vec![]);
//! session.handle_input(Input::KeyMessage { from: bob, message: &bytes }, now).ok();
//! while let Some(out) = session.poll_output() {
//!     match out {
//!         Output::SendKeyMessage { to, message } => { /* signalling.send(to, message) */ }
//!         Output::SendingEpoch(epoch) => { /* optionally write session.keylog_line(ssrc) */ }
//!         Output::EpochInstalled(_) | Output::EpochErased(_) => {}
//!     }
//! }
//! if let Some(at) = session.poll_timeout() { /* call session.handle_timeout(at) then */ }
//! // 4. Media: protect in place with RTP_OVERHEAD spare octets; unprotect naming the
//! //    sender that signalling maps the SSRC to.
//! let mut packet = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
//! session.protect_rtp_vec(&mut packet)?;
//! # Ok(()) }
//! ```
//! - [`KeySchedule`] decides keys ([`schedule`] documents the design and the argument that
//!   no two senders share a (key, nonce)); [`E2eeSession`] adds per-stream SRTP state.
//! - [`SrtpKeys`], [`SrtpSender`] and [`SrtpReceiver`] are usable on their own (e.g. by
//!   the load tool) for raw SRTP with or without an MKI.
//! - [`HpkeTransport`] implements [`KeyTransport`]; plug in your own messenger instead.
//! - [`keylog_line`] formats `SRTP <ssrc> <epoch> <key> <salt>` for `--key-log`.

pub mod ids;
pub mod schedule;
pub mod seal;
pub mod session;
pub mod srtp;

pub use ids::{BadId, CallSecret, ConferenceId, ID_LEN, ParticipantId, random_cname, random_ssrc};
pub use schedule::{
    HANDOVER_SKIP, Input, KeySchedule, Member, Output, ScheduleConfig, ScheduleError, SenderMaster,
};
pub use seal::{
    BoxRng, HpkeTransport, KeyMessageHeader, KeyPair, KeyPurpose, KeyTransport, SealError,
    open_key_message, seal_key_message, system_rng,
};
pub use session::{E2eeError, E2eeSession};
pub use srtp::{
    EpochId, MKI_LEN, OpenedRtcp, REPLAY_WINDOW, RTCP_OVERHEAD, RTP_OVERHEAD, SrtpError, SrtpKeys,
    SrtpReceiver, SrtpSender, TAG_LEN, keylog_line, read_mki, rtcp_needs_encryption,
};
