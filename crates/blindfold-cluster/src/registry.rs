//! The forwarder registry: each `blindfold serve --redis` keeps a short-lived record of
//! itself (node id, control URL, media candidates, region, shards, load, draining) that
//! placement reads, and that vanishes by itself when the process dies.
//!
//! Owns the registration record's shape, the refresh task and the reads of live nodes.
//! Must not touch: the forwarder's routing state (it is handed a load sampler) or any
//! participant data. The record holds only the forwarder's own addresses and counts.
//!
//! The record is a hash `bf:node:{id}` with a [`NODE_TTL`] of 5 s, rewritten whole every
//! [`NODE_REFRESH`] (1 s) by one script that also stamps it with Redis's clock and indexes
//! it in `bf:nodes`. Writing it whole means a Redis that restarted empty is repopulated on
//! the next refresh, with nothing to replay. A kill -9 stops the refreshes and the record
//! expires within 5 s; SIGTERM sets `draining` at once (not at the next tick), so nothing
//! new is placed there; a clean exit deletes the record.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::schema::{self, NODE_REFRESH, NODE_TTL, NODES};
use crate::{Cluster, Error};

/// A forwarder's load, sampled by the forwarder at each refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Endpoints in its routing table (participants and relay endpoints).
    pub endpoints: u64,
    /// Copies sent per second (RTP and RTCP), over the last refresh period.
    pub copies_per_sec: u64,
    /// CPU time used per second of wall time, in cores (1.0 = one core busy).
    pub cpu: f64,
}

/// What a forwarder registers about itself that does not change while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Node id, 1–32 characters of `[A-Za-z0-9_-]`.
    pub id: String,
    /// Control API base URL (e.g. `http://10.0.0.5:8480`).
    pub control: String,
    /// Media candidates handed to participants and to other forwarders' relay endpoints.
    pub media: Vec<SocketAddr>,
    /// Optional region label (`[a-z0-9-]`), preferred by placement.
    pub region: Option<String>,
    /// Shard threads.
    pub shards: u32,
}

impl Registration {
    /// Checks the shapes that go into Redis.
    pub fn validate(&self) -> Result<(), Error> {
        if !schema::valid_node_id(&self.id) {
            return Err(Error::Invalid("node id"));
        }
        if self
            .region
            .as_deref()
            .is_some_and(|r| !schema::valid_region(r))
        {
            return Err(Error::Invalid("region"));
        }
        if self.media.is_empty() {
            return Err(Error::Invalid("media candidates"));
        }
        if self.control.is_empty()
            || self.control.len() > 256
            || self.control.contains(char::is_whitespace)
        {
            return Err(Error::Invalid("control URL"));
        }
        Ok(())
    }
}

/// A live node as read from Redis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// What it registered.
    #[serde(flatten)]
    pub registration: Registration,
    /// Its last reported load.
    pub load: Load,
    /// Whether it refuses new calls (SIGTERM).
    pub draining: bool,
    /// When the load was sampled, on Redis's clock (ms).
    pub sampled_ms: u64,
}

/// Writes the whole record, stamps it with Redis's time, sets its TTL and indexes it.
/// KEYS: node hash, nodes set. ARGV: id, control, media, region, shards, endpoints,
/// copies, cpu, draining, ttl ms.
const REGISTER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'control', ARGV[2], 'media', ARGV[3],
  'region', ARGV[4], 'shards', ARGV[5], 'endpoints', ARGV[6], 'copies', ARGV[7],
  'cpu', ARGV[8], 'draining', ARGV[9], 'sampled_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[10])
redis.call('SADD', KEYS[2], ARGV[1])
return now
"#;

/// Sets `draining` on a live record (a no-op when it lapsed: the next refresh writes it).
const SET_DRAINING: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'draining', '1')
  return 1
end
return 0
"#;

fn media_text(media: &[SocketAddr]) -> String {
    media
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl Cluster {
    /// Writes `reg` with `load` now; returns Redis's time of the write (ms).
    pub async fn register(
        &self,
        reg: &Registration,
        load: Load,
        draining: bool,
    ) -> Result<u64, Error> {
        reg.validate()?;
        let script = redis::Script::new(REGISTER);
        let now: u64 = script
            .key(schema::node(&reg.id))
            .key(NODES)
            .arg(&reg.id)
            .arg(&reg.control)
            .arg(media_text(&reg.media))
            .arg(reg.region.as_deref().unwrap_or(""))
            .arg(reg.shards)
            .arg(load.endpoints)
            .arg(load.copies_per_sec)
            .arg(format!("{:.3}", load.cpu))
            .arg(if draining { "1" } else { "0" })
            .arg(schema::ms(NODE_TTL))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(now)
    }

    /// Marks node `id` draining at once.
    pub async fn set_draining(&self, id: &str) -> Result<bool, Error> {
        let n: u8 = redis::Script::new(SET_DRAINING)
            .key(schema::node(id))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// Removes node `id`'s record (a clean exit).
    pub async fn deregister(&self, id: &str) -> Result<(), Error> {
        let mut conn = self.conn();
        redis::pipe()
            .atomic()
            .del(schema::node(id))
            .srem(NODES, id)
            .exec_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Node `id`'s record, if it is live.
    pub async fn node(&self, id: &str) -> Result<Option<NodeInfo>, Error> {
        let map: std::collections::HashMap<String, String> =
            self.conn().hgetall(schema::node(id)).await?;
        if map.is_empty() {
            return Ok(None);
        }
        parse_node(&map).map(Some)
    }

    /// Every live node, by id. Index entries whose record lapsed are pruned.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, Error> {
        let mut conn = self.conn();
        let mut ids: Vec<String> = conn.smembers(NODES).await?;
        ids.sort_unstable();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(schema::node(id));
        }
        let maps: Vec<std::collections::HashMap<String, String>> =
            pipe.query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(ids.len());
        let mut lapsed = Vec::new();
        for (id, map) in ids.iter().zip(maps) {
            if map.is_empty() {
                lapsed.push(id.clone());
            } else {
                out.push(parse_node(&map)?);
            }
        }
        if !lapsed.is_empty() {
            // Another writer may have re-registered one meanwhile: the next refresh
            // re-adds it to the index, so this prune can never lose a live node for long.
            let _: () = conn.srem(NODES, lapsed).await?;
        }
        Ok(out)
    }
}

fn parse_node(map: &std::collections::HashMap<String, String>) -> Result<NodeInfo, Error> {
    let get = |k: &str| {
        map.get(k)
            .map(String::as_str)
            .ok_or_else(|| Error::Corrupt(format!("node record without {k}")))
    };
    let num = |k: &str| -> Result<u64, Error> {
        get(k)?
            .parse()
            .map_err(|_| Error::Corrupt(format!("node field {k}")))
    };
    let media = get("media")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .collect::<Result<Vec<SocketAddr>, _>>()
        .map_err(|_| Error::Corrupt("node media".into()))?;
    let region = get("region")?;
    Ok(NodeInfo {
        registration: Registration {
            id: get("id")?.to_string(),
            control: get("control")?.to_string(),
            media,
            region: (!region.is_empty()).then(|| region.to_string()),
            shards: num("shards")? as u32,
        },
        load: Load {
            endpoints: num("endpoints")?,
            copies_per_sec: num("copies")?,
            cpu: get("cpu")?
                .parse()
                .map_err(|_| Error::Corrupt("node field cpu".into()))?,
        },
        draining: get("draining")? == "1",
        sampled_ms: num("sampled_ms")?,
    })
}

/// Controls a running registration task.
pub struct RegistrationHandle {
    draining: watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl RegistrationHandle {
    /// Marks the node draining: written to Redis at once, and on every refresh after.
    pub fn set_draining(&self) {
        self.draining.send_replace(true);
    }

    /// Stops refreshing and deletes the record, waiting up to `wait` for Redis to
    /// confirm (a Redis that is down cannot; the record then lapses by its TTL). Callable
    /// from any thread, but not from the runtime the task runs on.
    pub fn stop(mut self, wait: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.done.recv_timeout(wait);
    }
}

/// Starts the registration task on `runtime`: it registers at once, then every
/// [`NODE_REFRESH`], with the load `sample` returns each time. Redis being down is
/// logged (at most every 10 s) and retried on the next tick; nothing else depends on it.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    url: &str,
    reg: Registration,
    sample: impl FnMut() -> Load + Send + 'static,
) -> Result<RegistrationHandle, Error> {
    reg.validate()?;
    let cluster = {
        let _enter = runtime.enter();
        Cluster::connect(url)?
    };
    let (draining_tx, draining_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        refresh_loop(cluster, reg, sample, draining_rx, stop_rx).await;
        let _ = done_tx.send(());
    });
    Ok(RegistrationHandle {
        draining: draining_tx,
        stop: Some(stop_tx),
        done: done_rx,
    })
}

/// Logs Redis failures without flooding: the first, then at most one every 10 s, and
/// the recovery.
struct FailureLog {
    failing_since: Option<Instant>,
    last_logged: Option<Instant>,
}

impl FailureLog {
    fn failed(&mut self, what: &str, e: &Error) {
        let now = Instant::now();
        self.failing_since.get_or_insert(now);
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(error = %e, "registry: {what} failed; retrying");
            self.last_logged = Some(now);
        }
    }

    fn succeeded(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                after_ms = since.elapsed().as_millis() as u64,
                "registry: registered again"
            );
        }
        self.last_logged = None;
    }
}

async fn refresh_loop(
    cluster: Cluster,
    reg: Registration,
    mut sample: impl FnMut() -> Load,
    mut draining: watch::Receiver<bool>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(NODE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = FailureLog {
        failing_since: None,
        last_logged: None,
    };
    let mut registered_once = false;
    loop {
        let drain_now = tokio::select! {
            _ = tick.tick() => false,
            r = draining.changed() => match r {
                Ok(()) => true,
                // The handle is gone without a stop: stop all the same.
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let is_draining = *draining.borrow_and_update();
        if drain_now && is_draining {
            // At once, not at the next tick: nothing new may land here from now on.
            match tokio::time::timeout(NODE_REFRESH, cluster.set_draining(&reg.id)).await {
                Ok(Ok(_)) => tracing::info!("registry: marked draining"),
                Ok(Err(e)) => log.failed("marking draining", &e),
                Err(_) => log.failed("marking draining", &Error::Timeout),
            }
        }
        let load = sample();
        match tokio::time::timeout(NODE_REFRESH, cluster.register(&reg, load, is_draining)).await {
            Ok(Ok(_)) => {
                if !registered_once {
                    tracing::info!("registry: registered");
                    registered_once = true;
                }
                log.succeeded();
            }
            Ok(Err(e)) => log.failed("refresh", &e),
            Err(_) => log.failed("refresh", &Error::Timeout),
        }
    }
    match tokio::time::timeout(Duration::from_secs(1), cluster.deregister(&reg.id)).await {
        Ok(Ok(())) => tracing::info!("registry: deregistered"),
        _ => tracing::warn!("registry: could not deregister; the record lapses by its TTL"),
    }
}
