//! blindfold-proto: everything the forwarder decides, with no I/O.
//!
//! Owns RFC 7983 demultiplexing and RTP/RTCP header reads ([`packet`]), RFC 8285 header
//! extensions with audio level and frame marking ([`ext`]), the STUN codec shared by
//! the forwarder, the participant and the load generator ([`stun`]), the shard-local
//! routing table ([`table`]), the router that turns one datagram into transmits
//! ([`route`]) with its selective-forwarding state ([`select`]), active speaker
//! detection ([`speaker`]), the authoritative control model ([`model`]) and the counters
//! the router keeps ([`counters`]). Behind the `sim` feature, `sim` drives the router
//! and the model together in memory with simulated time, for behaviour tests.
//!
//! Must never touch a socket, a thread, a clock or a key: time is an argument
//! (`Instant`), output is returned (transmits, events), and nothing here can decrypt
//! media. No mio, tokio, libc or socket2, and no `unsafe`. That is what lets the
//! behaviour tests drive the router and the model in memory with simulated time.
#![forbid(unsafe_code)]

pub mod counters;
pub mod ext;
pub mod model;
pub mod packet;
pub mod redact;
pub mod route;
pub mod select;
#[cfg(feature = "sim")]
pub mod sim;
pub mod speaker;
pub mod stun;
pub mod table;
