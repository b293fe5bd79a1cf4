//! blindfold-cluster: what the processes of a blindfold cluster share, kept in Redis, and
//! the plan of the relay links that let one call span several forwarders.
//!
//! Owns the Redis schema ([`schema`]) and every operation on it: the forwarder registry
//! ([`registry`]), the atomic placement of calls and their members on forwarders
//! ([`placement`]), the call state and message bus the signalling instances share
//! ([`call`], [`bus`]); and, without I/O, which relay links a call needs and what each
//! relay endpoint publishes and subscribes ([`links`]).
//!
//! Must not touch: sockets other than its Redis connections, any key material, or any
//! participant address, user or device name. Redis holds only ephemeral ids, opaque
//! records the signalling service hands in (which carry no address), and the forwarders'
//! own addresses and counts. The forwarder links this crate for its registry, so its
//! dependency graph must stay free of crypto crates: the `redis` client is built without
//! TLS (`tests/forwarder_keyless.rs` checks the graph).
//!
//! All operations that must not interleave (placement, joins, leaves, lease expiry) are
//! single Lua scripts: Redis runs each atomically, so two signalling instances doing the
//! same thing at the same moment get the same answer, never a read-then-write race.

pub mod bus;
pub mod call;
pub mod links;
pub mod placement;
pub mod registry;
pub mod schema;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use call::{CallState, Event, EventKind, Joined, MemberRecord};
pub use placement::{Budget, Placed};
pub use registry::{Load, NodeInfo, Registration, RegistrationHandle};

/// How long one Redis round trip may take before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached, timed out or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer in time")]
    Timeout,
    /// The Redis URL is not usable.
    #[error("redis URL: {0}")]
    Url(String),
    /// An argument has the wrong shape (an id outside the id alphabet, a too large body).
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// No live, non-draining forwarder is registered.
    #[error("no live forwarder is registered")]
    NoForwarder,
    /// The participant id is already in the call.
    #[error("the participant id is already in the call")]
    Taken,
    /// The participant is not (or no longer) in the call.
    #[error("not a member of the call")]
    NotMember,
    /// A record in Redis does not have the expected shape.
    #[error("malformed record in redis: {0}")]
    Corrupt(String),
}

impl Error {
    /// Whether retrying later may succeed (Redis unreachable or slow), as opposed to a
    /// refusal that will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
            }
            Error::Timeout | Error::NoForwarder => true,
            _ => false,
        }
    }
}

/// The cluster's shared state: a handle on one Redis, cheap to clone. Every operation
/// goes through one multiplexed connection that reconnects by itself; blocking reads of
/// the message bus use their own connection ([`bus::Follower`]).
#[derive(Clone)]
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: keep it out of debug output.
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// A handle on the Redis at `url` (`redis://host:port/db`, `redis+unix:///path`).
    /// Does not connect: the first operation does, and a Redis that is down now is
    /// reached once it is up. Must be called inside a tokio runtime, which then runs the
    /// connection's tasks.
    pub fn connect(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(|e| Error::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { client, conn })
    }

    /// The shared multiplexed connection (a clone: cheap).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for connections of their own (blocking reads).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Redis's own clock, in milliseconds: leases and claims are compared against it,
    /// never against a local clock, so instances with skewed clocks agree.
    pub async fn now_ms(&self) -> Result<u64, Error> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Every key under [`schema::PREFIX`] (SCAN, for audits and tests; not for hot paths).
    pub async fn keys(&self) -> Result<Vec<String>, Error> {
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", schema::PREFIX))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            out.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Every key under [`schema::PREFIX`] with its whole content as text (hash fields
    /// and values, set and sorted-set members, stream entries' fields), for the keyspace
    /// audit: what a reader of this Redis could learn.
    pub async fn dump(&self) -> Result<Vec<(String, String)>, Error> {
        let mut conn = self.conn();
        let mut out = Vec::new();
        for key in self.keys().await? {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
            let text = match kind.as_str() {
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut conn)
                    .await?
                    .unwrap_or_default(),
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await?
                    .join(" "),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await?
                    .join(" "),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async::<Vec<String>>(&mut conn)
                    .await?
                    .join(" "),
                "stream" => {
                    let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg("-")
                        .arg("+")
                        .query_async(&mut conn)
                        .await?;
                    let mut t = String::new();
                    for e in r.ids {
                        t.push_str(&e.id);
                        let mut fields: Vec<_> = e.map.iter().collect();
                        fields.sort_by(|a, b| a.0.cmp(b.0));
                        for (k, v) in fields {
                            let v = redis::from_redis_value_ref::<String>(v).unwrap_or_default();
                            t.push_str(&format!(" {k}={v}"));
                        }
                        t.push('\n');
                    }
                    t
                }
                // A key that expired between SCAN and TYPE.
                "none" => continue,
                other => format!("<{other}>"),
            };
            out.push((key, text));
        }
        Ok(out)
    }
}
