//! blindfold: a keyless media forwarder for end-to-end encrypted group calls.
//!
//! The crate is one package with a module per process role:
//!
//! - [`forwarder`]: the keyless server (`blindfold serve`). Per-core shards receive
//!   SRTP/SRTCP and STUN with `recvmmsg`, look up the sender in a shard-owned routing
//!   table and hand the kernel byte-identical copies with `sendmmsg`. It reads only
//!   RTP/RTCP headers and never imports [`e2ee`] (a test enforces this).
//! - [`e2ee`]: the participants' side: SRTP (AEAD_AES_128_GCM) under a rotating group
//!   key, the key schedule, sealed key messages and ephemeral identifiers.
//! - [`signal`]: the reference signalling service that drives forwarders through their
//!   control API and relays sealed key messages it cannot read.
//! - [`client`]: a headless participant built on [`e2ee`].
//! - [`demo`]: the whole call on one machine, with its security checks.
//! - [`load`]: load generator, capacity planner and the kernel ceiling.
//!
//! `unsafe` is denied everywhere except `forwarder::sys`, the syscall module.
#![deny(unsafe_code)]

pub mod client;
pub mod demo;
pub mod e2ee;
pub mod forwarder;
pub mod load;
pub mod signal;
pub mod telemetry;
