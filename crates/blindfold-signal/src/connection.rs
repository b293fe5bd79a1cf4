//! One participant's WebSocket: the bounded outbox the service writes to, the writer task
//! that drains it, and the reader loop that turns frames into service operations.
//!
//! Owns the connection's lifetime: the join deadline, closing a slow consumer (one whose
//! queued bytes pass the limit: a member that stops reading must not grow the service's
//! memory), and the leave a dropped connection implies. Must not block on the socket
//! while holding anything shared: the service only ever enqueues, never awaits a member.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc};

use crate::limits::Guard;
use crate::proto::{
    CHALLENGE_LEN, ClientMessage, ErrorCode, JOIN_KEY_LEN, MAX_FRAME, ServerMessage, encode,
    parse_client,
};
use crate::service::{JoinRequest, Refusal, Service};

/// How long queued messages (`left`, a last error) may take to go out once the
/// connection is done.
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// Where the service puts messages for one connection. Cloning shares the queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
    max: usize,
    overflow: Arc<Notify>,
}

impl Outbox {
    fn new(max: usize) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = Self {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            max,
            overflow: Arc::new(Notify::new()),
        };
        (me, rx)
    }

    /// Queues `msg`. When the bytes queued would pass the limit the message is dropped and
    /// the connection is told to close: the consumer is too slow.
    pub(crate) fn send(&self, msg: &ServerMessage) {
        let text = encode(msg);
        let n = text.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.overflow.notify_one();
            return;
        }
        if self.tx.send(text).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// Serves one participant's WebSocket until it leaves, the connection drops, it misses
/// the join deadline or it falls too far behind. `conn` is its admission (held until the
/// socket is gone).
pub async fn serve(service: Arc<Service>, socket: WebSocket, conn: Arc<Guard>) {
    let limits = service.admission().limits().clone();
    let (mut sink, mut stream) = socket.split();
    let (out, mut rx) = Outbox::new(limits.max_queued_bytes);
    let queued = out.queued.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            let n = text.len();
            let sent = sink.send(Message::Text(text.into())).await;
            queued.fetch_sub(n, Ordering::AcqRel);
            if sent.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let overflow = out.overflow.clone();
    let join_deadline = tokio::time::sleep(limits.join_timeout());
    tokio::pin!(join_deadline);
    let mut challenge = [0u8; CHALLENGE_LEN];
    rand::fill(&mut challenge);
    out.send(&ServerMessage::Challenge {
        nonce: hex::encode(challenge),
    });
    let mut joined: Option<(Arc<crate::service::Conference>, String)> = None;
    let mut slow = false;
    loop {
        let frame = tokio::select! {
            _ = overflow.notified() => {
                slow = true;
                break;
            }
            _ = &mut join_deadline, if joined.is_none() => {
                refuse(&service, &out, Refusal(ErrorCode::JoinTimeout, "no join in time".into()));
                break;
            }
            frame = stream.next() => frame,
        };
        let Some(Ok(frame)) = frame else { break };
        let text = match frame {
            Message::Text(t) => t,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                refuse(
                    &service,
                    &out,
                    Refusal(ErrorCode::BadRequest, "text frames only".into()),
                );
                continue;
            }
        };
        if text.len() > MAX_FRAME {
            refuse(
                &service,
                &out,
                Refusal(ErrorCode::BadRequest, "frame too large".into()),
            );
            continue;
        }
        let msg = match parse_client(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                refuse(
                    &service,
                    &out,
                    Refusal(ErrorCode::BadRequest, e.to_string()),
                );
                continue;
            }
        };
        let result = match (&joined, msg) {
            (
                None,
                ClientMessage::Join {
                    conference,
                    participant,
                    proof,
                    key_package,
                    join_key,
                },
            ) => match join_request(
                conference,
                participant.clone(),
                &proof,
                key_package,
                join_key,
            ) {
                Ok(mut req) => {
                    req.challenge = challenge;
                    req.source = conn.source();
                    service.join(req, &out).await.map(|conf| {
                        joined = Some((conf, participant));
                    })
                }
                Err(r) => Err(r),
            },
            (None, _) => Err(Refusal(ErrorCode::WrongState, "join first".into())),
            (Some(_), ClientMessage::Join { .. }) => {
                Err(Refusal(ErrorCode::WrongState, "already joined".into()))
            }
            (Some((conf, pid)), ClientMessage::Publish { tracks }) => {
                service.publish(conf, pid, tracks).await
            }
            (Some((conf, pid)), ClientMessage::Subscribe { to }) => {
                service.subscribe(conf, pid, to)
            }
            (Some((conf, pid)), ClientMessage::Handshake { message, welcome }) => {
                service.relay_handshake(conf, pid, message, welcome)
            }
            (
                Some((conf, pid)),
                ClientMessage::Receive {
                    layer,
                    last_n,
                    top_k_audio,
                    pins,
                },
            ) => {
                let choice = crate::service::Choice {
                    layer,
                    last_n,
                    top_k_audio,
                    pins,
                };
                service.receive(conf, pid, choice).await
            }
            (Some((conf, pid)), ClientMessage::Leave) => {
                service.leave(conf, pid).await;
                out.send(&ServerMessage::Left);
                joined = None;
                break;
            }
        };
        if let Err(r) = result {
            refuse(&service, &out, r);
        }
    }
    // A dropped (or dropped-for-slowness) WebSocket is a leave.
    if let Some((conf, pid)) = joined {
        service.leave(&conf, &pid).await;
    }
    if slow {
        // It does not read: whatever is queued would never go out. The socket closes with
        // the writer, and the member's queue is freed now, not when TCP gives up.
        tracing::debug!("closing a slow consumer");
        service.metrics().slow_consumer();
        writer.abort();
    } else {
        drop(out);
        if tokio::time::timeout(FLUSH_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }
}

/// Decodes a join's hex fields (their shape was validated by [`parse_client`]).
fn join_request(
    conference: String,
    participant: String,
    proof: &str,
    key_package: String,
    join_key: Option<String>,
) -> Result<JoinRequest, Refusal> {
    let bad = |f: &str| Refusal(ErrorCode::BadRequest, format!("malformed {f}"));
    let proof = hex::decode(proof).map_err(|_| bad("proof"))?;
    let join_key = match join_key {
        Some(k) => Some(
            hex::decode(k)
                .ok()
                .and_then(|k| <[u8; JOIN_KEY_LEN]>::try_from(k.as_slice()).ok())
                .ok_or_else(|| bad("join_key"))?,
        ),
        None => None,
    };
    Ok(JoinRequest {
        conference,
        participant,
        proof,
        key_package,
        join_key,
        challenge: [0; CHALLENGE_LEN],
        source: std::net::IpAddr::from([0, 0, 0, 0]),
    })
}

fn refuse(service: &Service, out: &Outbox, Refusal(code, message): Refusal) {
    tracing::debug!(?code, %message, "request refused");
    service.metrics().refused(code);
    out.send(&ServerMessage::Error { code, message });
}
