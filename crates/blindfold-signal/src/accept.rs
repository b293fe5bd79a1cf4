//! The service's accept loop: every TCP connection is admitted against the connection
//! limits (total and per source address) before any byte of it is read, served as
//! HTTP/1.1 with a header deadline, and carries its admission into the WebSocket it may
//! upgrade to, so the slot is held exactly as long as the connection lives.
//!
//! Owns accepting and admission; must not read request bodies or know the protocol.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt as _;

use crate::limits::{Admission, Quota, Refused};
use crate::metrics::{ConnectionRefusal, Metrics};

/// A connection must deliver a request's headers this soon (slow-loris bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refusal may take to write before the connection is just dropped.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Accepts until `shutdown` fires.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let guard = match admission.admit(peer.ip(), Quota::Connections) {
            Ok(g) => Arc::new(g),
            Err(r) => {
                metrics.connection_refused(match r {
                    Refused::Full => ConnectionRefusal::Total,
                    Refused::Source(_) => ConnectionRefusal::PerSource,
                });
                tokio::spawn(refuse(stream, r));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req| {
            req.extensions_mut().insert(guard.clone());
            router.clone().oneshot(req)
        });
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Answers a connection over a limit with a plain 503 naming the limit, and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, why: Refused) {
    let reason = match why {
        Refused::Full => "the signalling service is at its connection limit",
        Refused::Source(_) => "too many connections from this address",
    };
    tracing::debug!(reason, "connection refused");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
