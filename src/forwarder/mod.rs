//! The keyless forwarder (`blindfold serve`): copies SRTP/SRTCP between the endpoints of a
//! conference without keys, reading only RTP/RTCP headers.
//!
//! Must never import `crate::e2ee` (a test greps for it): the forwarder holds no media
//! key and has no code that could use one.
//!
//! ```text
//!  shard thread (one per core, pinned)                     control thread (tokio)
//!  mio Poll ─▶ sys::RecvBatch ─▶ route::Router ─┐          HTTP API, /metrics
//!                 STUN ─▶ ice (verify, latch)    │◀─Update── model of conferences
//!  sys::SendBatch ◀─ transmits ◀─────────────────┘─ShardEvent─▶ (latches, consent)
//! ```
//! - [`sys`]: recvmmsg/sendmmsg and socket options; the crate's only `unsafe`.
//! - [`packet`]: RFC 7983 demultiplexing and RTP/RTCP header reads.
//! - [`ice`]: STUN Binding for ICE-lite latching and consent.
//! - [`table`]: the shard-local routing table and the updates that change it.
//! - [`route`]: the sans-IO routing core: datagram in, transmits out.
//! - [`shard`]: the per-core event loop that owns all media I/O.
//! - [`control`]: the HTTP control API, the authoritative model and metrics rendering.
//! - [`metrics`]: counters and drop reasons.

pub mod config;
pub mod control;
pub mod ice;
pub mod metrics;
pub mod packet;
pub mod route;
pub mod shard;
pub mod sys;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use table::{EpIdx, Update};

/// What a shard tells the control thread.
#[derive(Debug, Clone)]
pub enum ShardEvent {
    /// A verified STUN check latched, moved or refreshed an endpoint.
    Latched {
        /// Endpoint slot.
        ep: EpIdx,
        /// Slot generation the shard saw.
        generation: u32,
        /// The checked source address.
        addr: SocketAddr,
        /// When consent lapses unless refreshed again.
        consent_until: Instant,
    },
}

/// One shard's inbox: its update channel and the waker of its `Poll`.
pub struct ShardLink {
    /// Ordered updates for this shard.
    pub updates: crossbeam_channel::Sender<Update>,
    /// Wakes the shard's `Poll` so updates apply without waiting for traffic.
    pub waker: Arc<mio::Waker>,
}

/// Every shard's inbox; the control thread's way to change routing state.
#[derive(Clone)]
pub struct ShardSet {
    links: Arc<[ShardLink]>,
}

impl ShardSet {
    /// Wraps the shards' inboxes.
    pub fn new(links: Vec<ShardLink>) -> Self {
        Self {
            links: links.into(),
        }
    }

    /// Sends `updates` to every shard, in order, then wakes each shard once. Never
    /// blocks: the channels are unbounded and owned by live shards (a stopped shard's
    /// closed channel is ignored).
    pub fn broadcast(&self, updates: &[Update]) {
        for link in self.links.iter() {
            for u in updates {
                let _ = link.updates.send(u.clone());
            }
            let _ = link.waker.wake();
        }
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when there are no shards.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// Entry point of `blindfold serve` (in progress).
pub fn run_cli(_args: config::ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
