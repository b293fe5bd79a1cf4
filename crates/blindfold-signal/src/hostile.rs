//! A delivery service that misbehaves on command: for tests of what a hostile signalling
//! service can and cannot do to a call. Compiled only with the `hostile-testing` feature,
//! which no production build enables (the root package turns it on for its tests only).
//!
//! Owns the policy hook the service consults before each delivery, and nothing else: the
//! service's own logic stays the same, so a test exercises the real relay.

use std::time::Duration;

use super::proto::ServerMessage;

/// What to do with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deliver,
    Drop,
    Delay(Duration),
}

/// A misbehaviour. `decide` sees every message the service is about to send to a member as
/// part of the relay (handshakes, Welcomes, leave announcements), with the sender's id and
/// the MLS epoch where there is one.
pub trait Policy: Send + Sync + 'static {
    fn decide(&self, msg: &ServerMessage, from: &str, to: &str, epoch: Option<u64>) -> Action;

    /// `false` relays every Commit, not just the first per epoch (lets a test fork the group).
    fn order_commits(&self) -> bool {
        true
    }
}

impl<F> Policy for F
where
    F: Fn(&ServerMessage, &str, &str, Option<u64>) -> Action + Send + Sync + 'static,
{
    fn decide(&self, msg: &ServerMessage, from: &str, to: &str, epoch: Option<u64>) -> Action {
        self(msg, from, to, epoch)
    }
}
