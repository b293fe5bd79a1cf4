//! blindfold-control: the forwarder's control API on the wire.
//!
//! Owns the request and response bodies (serde types with OpenAPI schemas), the error
//! body and its stable codes, shared by the server in `blindfold-forwarder` and the one
//! typed client ([`client::Client`], feature `client`; [`blocking::Client`], feature
//! `blocking`) used by the signalling service, the load generator and the tests. Must not
//! touch the routing state or any key, and must not change a path, field, status code or
//! JSON shape: other programs speak this API.
//!
//! - [`wire`]: the bodies.
//! - [`error`]: [`ErrorCode`] (code ↔ status) and [`ErrorBody`].
//! - [`client`]: async client over reqwest (plain HTTP: the API lives on a private network).
//! - [`blocking`]: the same calls on a private current-thread runtime.

pub mod error;
pub mod wire;

#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "client")]
pub mod client;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use wire::*;

/// Longest caller-given id (conference or endpoint).
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is a valid caller-given id: 1..=64 characters of `[A-Za-z0-9_-]`. The
/// server checks this itself; the client checks it first so an id can never change the
/// path it is put in.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
