//! The message bus: live delivery of calls' event streams to a signalling instance.
//!
//! Owns one task per instance that follows the streams of the calls the instance has
//! members in, on a Redis connection of its own (a blocking `XREAD` would stall every
//! other command on the shared one), and hands each event over in stream order. Must not
//! interpret event bodies or decide who receives them: the instance does.
//!
//! Why streams and not pub/sub: a stream keeps what was sent while a follower was
//! reconnecting, and its entry ids are the cursors that tie a snapshot ([`crate::call`])
//! to the changes after it. A follower that loses Redis reconnects with backoff and goes
//! on from its cursors; one that starts following a call is woken at once (`CLIENT
//! UNBLOCK`) instead of at the end of its current block.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::call::Event;
use crate::schema::{self, CallKeys};
use crate::{Cluster, Error};

/// How long one `XREAD` blocks when nothing arrives.
const BLOCK: Duration = Duration::from_millis(1000);
/// Most entries read per stream per round.
const READ_COUNT: usize = 256;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

enum Command {
    Follow { call: String, cursor: String },
    Unfollow { call: String },
}

/// Follows calls' event streams and delivers `(call, event)` in stream order per call.
/// Dropping it stops the task.
pub struct Follower {
    commands: mpsc::UnboundedSender<Command>,
    cluster: Cluster,
    /// The reading connection's CLIENT ID (0 until connected), for CLIENT UNBLOCK.
    reader_id: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Starts following nothing; events go to `out` (a bounded channel: a slow consumer
    /// slows the follower, never grows it).
    pub fn spawn(cluster: &Cluster, out: mpsc::Sender<(String, Event)>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let reader_id = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(cluster.clone(), rx, out, reader_id.clone()));
        Self {
            commands: tx,
            cluster: cluster.clone(),
            reader_id,
            task,
        }
    }

    /// Delivers `call`'s events after `cursor` (a snapshot's or a join's cursor) from now
    /// on. Following a call already followed moves its cursor only forward.
    pub fn follow(&self, call: &str, cursor: &str) -> Result<(), Error> {
        if !schema::valid_id(call) {
            return Err(Error::Invalid("call id"));
        }
        let _ = self.commands.send(Command::Follow {
            call: call.to_string(),
            cursor: cursor.to_string(),
        });
        self.wake();
        Ok(())
    }

    /// Stops delivering `call`'s events.
    pub fn unfollow(&self, call: &str) {
        let _ = self.commands.send(Command::Unfollow {
            call: call.to_string(),
        });
    }

    /// Ends the reader's current block so it picks up a new call now.
    fn wake(&self) {
        let id = self.reader_id.load(Ordering::Acquire);
        if id == 0 {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.cluster.conn();
        rt.spawn(async move {
            let _: Result<u8, _> = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query_async(&mut conn)
                .await;
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Compares stream ids (`ms-seq`) numerically.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

async fn connect(cluster: &Cluster) -> Result<(MultiplexedConnection, u64), Error> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(crate::CONNECT_TIMEOUT))
        .set_response_timeout(Some(BLOCK + crate::RESPONSE_TIMEOUT));
    let mut conn = cluster
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await?;
    Ok((conn, id))
}

fn apply(cursors: &mut BTreeMap<String, String>, cmd: Command) {
    match cmd {
        Command::Follow { call, cursor } => {
            let e = cursors.entry(call).or_insert_with(|| cursor.clone());
            if id_key(&cursor) > id_key(e) {
                *e = cursor;
            }
        }
        Command::Unfollow { call } => {
            cursors.remove(&call);
        }
    }
}

async fn run(
    cluster: Cluster,
    mut commands: mpsc::UnboundedReceiver<Command>,
    out: mpsc::Sender<(String, Event)>,
    reader_id: Arc<AtomicU64>,
) {
    let mut cursors: BTreeMap<String, String> = BTreeMap::new();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        while let Ok(cmd) = commands.try_recv() {
            apply(&mut cursors, cmd);
        }
        if cursors.is_empty() {
            match commands.recv().await {
                Some(cmd) => {
                    apply(&mut cursors, cmd);
                    continue;
                }
                None => return,
            }
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&cluster).await {
                Ok((c, id)) => {
                    reader_id.store(id, Ordering::Release);
                    backoff = Duration::from_millis(50);
                    conn.insert(c)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bus: connecting failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let calls: Vec<String> = cursors.keys().cloned().collect();
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for call in &calls {
            xread.arg(CallKeys::new(call).events);
        }
        for call in &calls {
            xread.arg(&cursors[call]);
        }
        // Commands that arrive during the block are applied as they come; a new call
        // wakes the reader through CLIENT UNBLOCK (sent by `follow`).
        let reply = {
            let read = xread.query_async::<Option<redis::streams::StreamReadReply>>(c);
            tokio::pin!(read);
            loop {
                tokio::select! {
                    r = &mut read => break r,
                    cmd = commands.recv() => match cmd {
                        Some(cmd) => apply(&mut cursors, cmd),
                        None => return,
                    },
                }
            }
        };
        match reply {
            Ok(None) => {}
            Ok(Some(reply)) => {
                for key in reply.keys {
                    let Some(call) = schema::call_of(&key.key).map(str::to_string) else {
                        continue;
                    };
                    for entry in key.ids {
                        // Unfollowed meanwhile: drop; followed again from a later cursor:
                        // skip what that cursor already covers.
                        let Some(cur) = cursors.get_mut(&call) else {
                            break;
                        };
                        if id_key(&entry.id) <= id_key(cur) {
                            continue;
                        }
                        *cur = entry.id.clone();
                        match Event::from_fields(entry.id, &entry.map) {
                            Ok(ev) => {
                                if out.send((call.clone(), ev)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "bus: malformed event skipped"),
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "bus: read failed; reconnecting");
                conn = None;
                reader_id.store(0, Ordering::Release);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_only_move_forward() {
        let mut c = BTreeMap::new();
        apply(
            &mut c,
            Command::Follow {
                call: "c".into(),
                cursor: "10-2".into(),
            },
        );
        apply(
            &mut c,
            Command::Follow {
                call: "c".into(),
                cursor: "9-5".into(),
            },
        );
        assert_eq!(c["c"], "10-2");
        apply(
            &mut c,
            Command::Follow {
                call: "c".into(),
                cursor: "10-10".into(),
            },
        );
        assert_eq!(c["c"], "10-10");
        apply(&mut c, Command::Unfollow { call: "c".into() });
        assert!(c.is_empty());
        assert!(id_key("2-0") > id_key("1-99"));
    }
}
