//! The Redis keyspace: every key name, its type, its lifetime, and the shape of the ids
//! that go into key names. The one place to read to know what blindfold keeps in Redis.
//!
//! Owns key naming and id validation only; it performs no I/O. Must not admit anything
//! into a key name that is not an ephemeral id or a forwarder's own node id: a
//! participant's address, user or device name never becomes part of a key.
//!
//! | key | type | lifetime | holds |
//! |---|---|---|---|
//! | `bf:nodes` | set | index, pruned when a node's key is gone | node ids |
//! | `bf:node:{node}` | hash | 5 s TTL, refreshed every second | a forwarder's registration ([`crate::registry::NodeInfo`]) |
//! | `bf:node:{node}:claims` | sorted set | 10 s TTL | placements made since the node's last load report |
//! | `bf:call:{call}:home` | string | the call's | the call's home node id |
//! | `bf:call:{call}:placement` | hash | the call's | participant → node id |
//! | `bf:call:{call}:members` | hash | the call's | participant → `{"order":N,"info":…}` |
//! | `bf:call:{call}:tracks` | hash | the call's | participant → its tracks (JSON) |
//! | `bf:call:{call}:subs` | hash | the call's | participant → its subscription (JSON) |
//! | `bf:call:{call}:owners` | hash | the call's | participant → signalling instance id |
//! | `bf:call:{call}:leases` | sorted set | the call's | participant → lease deadline (ms) |
//! | `bf:call:{call}:seq` | string | the call's | the join counter |
//! | `bf:call:{call}:events` | stream | the call's | the call's message bus |
//! | `bf:call:{call}:links` | hash | the call's | relay links between its nodes (JSON) |
//! | `bf:call:{call}:lock` | string | its own, ≤ 30 s | the instance reconciling the call's forwarders |
//! | `bf:call:{call}:dirty` | string | its own, ≤ 30 s | a change arrived while the lock was held |
//!
//! "The call's" lifetime: every write to a call sets [`CALL_TTL`] on all its keys, and
//! the signalling instances holding its members renew it; when the last member leaves,
//! the keys get [`ENDED_TTL`] (long enough for followers to read the final event), so
//! nothing of a call outlives it. The `{call}` braces are literal: they are Redis Cluster
//! hash tags, so every key of one call lives in one slot and a script may touch them all.

use std::time::Duration;

/// Prefix of every key blindfold writes.
pub const PREFIX: &str = "bf:";
/// The set of registered node ids.
pub const NODES: &str = "bf:nodes";
/// How long a registration lives without a refresh.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How often a forwarder refreshes its registration.
pub const NODE_REFRESH: Duration = Duration::from_secs(1);
/// How long placement claims are remembered (longer than a load report takes to arrive).
pub const CLAIMS_TTL: Duration = Duration::from_secs(10);
/// How far a load report lags the placements it reflects: a placement becomes an
/// endpoint after a control-API round trip, the shards publish their table counts every
/// 500 ms, the registry samples them every second. A claim counts against its node until
/// a report sampled this much later than the claim arrives, so a placement is counted
/// at least once (sometimes twice, for up to this long), never not at all.
pub const REPORT_LAG: Duration = Duration::from_secs(2);
/// Lifetime of a live call's keys, renewed by every write and by member leases.
pub const CALL_TTL: Duration = Duration::from_secs(120);
/// Lifetime of a call's keys after its last member left.
pub const ENDED_TTL: Duration = Duration::from_secs(10);
/// Entries kept in a call's event stream (approximately: `MAXLEN ~`).
pub const EVENTS_MAXLEN: usize = 4096;
/// Longest node id: relay endpoint ids are `r-` plus a node id and must fit the control
/// API's 64 characters.
pub const MAX_NODE_ID_LEN: usize = 32;
/// Longest region label.
pub const MAX_REGION_LEN: usize = 32;

/// Whether `id` may be a call or participant id: 1–64 characters of `[A-Za-z0-9_-]`, the
/// control API's id alphabet. Ephemeral ids (32 hex digits) fit; an address, an e-mail
/// address or a name with spaces does not.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(id_byte)
}

/// Whether `id` may be a node id: 1–[`MAX_NODE_ID_LEN`] characters of `[A-Za-z0-9_-]`.
pub fn valid_node_id(id: &str) -> bool {
    (1..=MAX_NODE_ID_LEN).contains(&id.len()) && id.bytes().all(id_byte)
}

/// Whether `r` may be a region label: 1–[`MAX_REGION_LEN`] characters of `[a-z0-9-]`.
pub fn valid_region(r: &str) -> bool {
    (1..=MAX_REGION_LEN).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A fresh random node id (12 hex digits), for forwarders started without one.
pub fn random_node_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A node's registration hash.
pub fn node(id: &str) -> String {
    format!("bf:node:{id}")
}

/// A node's recent placement claims.
pub fn node_claims(id: &str) -> String {
    format!("bf:node:{id}:claims")
}

/// The keys of one call, in the fixed order the scripts take them (`KEYS[1..]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKeys {
    /// `…:home`
    pub home: String,
    /// `…:placement`
    pub placement: String,
    /// `…:members`
    pub members: String,
    /// `…:tracks`
    pub tracks: String,
    /// `…:subs`
    pub subs: String,
    /// `…:owners`
    pub owners: String,
    /// `…:leases`
    pub leases: String,
    /// `…:seq`
    pub seq: String,
    /// `…:events`
    pub events: String,
    /// `…:links`
    pub links: String,
    /// `…:lock` (not in [`CallKeys::all`]: it keeps its own short TTL).
    pub lock: String,
    /// `…:dirty` (not in [`CallKeys::all`]).
    pub dirty: String,
}

impl CallKeys {
    /// The keys of call `id` (validated by the caller).
    pub fn new(id: &str) -> Self {
        let k = |s: &str| format!("bf:call:{{{id}}}:{s}");
        Self {
            home: k("home"),
            placement: k("placement"),
            members: k("members"),
            tracks: k("tracks"),
            subs: k("subs"),
            owners: k("owners"),
            leases: k("leases"),
            seq: k("seq"),
            events: k("events"),
            links: k("links"),
            lock: k("lock"),
            dirty: k("dirty"),
        }
    }

    /// All of them, in script order: home, placement, members, tracks, subs, owners,
    /// leases, seq, events, links.
    pub fn all(&self) -> [&str; 10] {
        [
            &self.home,
            &self.placement,
            &self.members,
            &self.tracks,
            &self.subs,
            &self.owners,
            &self.leases,
            &self.seq,
            &self.events,
            &self.links,
        ]
    }
}

/// The call id in a call key, if `key` is one (for keyspace audits).
pub fn call_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("bf:call:{")?;
    let end = rest.find('}')?;
    Some(&rest[..end])
}

/// Milliseconds of a duration, for PEXPIRE and scripts.
pub fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_addresses_and_names() {
        assert!(valid_id("00112233445566778899aabbccddeeff"));
        assert!(valid_id("r-node_1"));
        for bad in [
            "",
            "10.0.0.1:5000",
            "alice@example.org",
            "Alice Smith",
            "a/b",
            "{x}",
            &"a".repeat(65),
        ] {
            assert!(!valid_id(bad), "{bad:?} must be refused");
        }
        assert!(valid_node_id(&"n".repeat(32)) && !valid_node_id(&"n".repeat(33)));
        assert!(valid_region("eu-west-1") && !valid_region("EU") && !valid_region(""));
        let a = random_node_id();
        assert!(valid_node_id(&a) && a.len() == 12);
        assert_ne!(a, random_node_id());
    }

    #[test]
    fn call_keys_share_one_hash_tag() {
        let k = CallKeys::new("c1");
        for key in k.all() {
            assert!(key.starts_with("bf:call:{c1}:"), "{key}");
            assert_eq!(call_of(key), Some("c1"));
        }
        let mut names: Vec<_> = k.all().to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 10);
        assert_eq!(call_of("bf:node:n1"), None);
    }
}
