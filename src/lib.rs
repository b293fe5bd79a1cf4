//! blindfold: a keyless media forwarder for end-to-end encrypted group calls.
//!
//! This root package is the `blindfold` command and the demo; the system lives in the
//! workspace's crates, re-exported here under their roles so tests, benches and the CLI
//! name one path:
//!
//! - [`proto`] (`blindfold-proto`): sans-IO decisions: RFC 7983 demultiplexing, RTP/RTCP
//!   headers, the STUN codec, the routing table, the router and the control model.
//! - [`udp`] (`blindfold-udp`): recvmmsg/sendmmsg and socket options, the only `unsafe`.
//! - [`control`] (`blindfold-control`): the control API's wire types and typed client.
//! - [`forwarder`] (`blindfold-forwarder`): the keyless server: shards and control API.
//! - [`e2ee`] (`blindfold-e2ee`): the MLS group, SRTP under keys exported from its epochs,
//!   ephemeral ids. No server crate depends on it.
//! - [`signal`] (`blindfold-signal`): the reference signalling service.
//! - [`edge`] (`blindfold-edge`): the browser edge: ICE and DTLS-SRTP (hop keys only).
//! - [`client`] (`blindfold-client`): a headless E2EE participant.
//! - [`load`] (`blindfold-load`): load generator, capacity planner, kernel ceiling.
//! - [`cluster`] (`blindfold-cluster`): the state a cluster shares in Redis (forwarder
//!   registry, call placement, call state and message bus) and relay-link planning.
//! - [`demo`]: the whole call on one machine, with its security checks.
//! - [`group_cost`]: what an MLS join and leave cost at a given group size.
#![forbid(unsafe_code)]

pub use blindfold_client as client;
pub use blindfold_cluster as cluster;
pub use blindfold_control as control;
pub use blindfold_e2ee as e2ee;
pub use blindfold_edge as edge;
pub use blindfold_forwarder as forwarder;
pub use blindfold_load as load;
pub use blindfold_proto as proto;
pub use blindfold_signal as signal;
pub use blindfold_udp as udp;

pub mod demo;
pub mod group_cost;
pub mod telemetry;
