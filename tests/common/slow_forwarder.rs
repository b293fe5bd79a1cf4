//! A stand-in forwarder control API for signalling tests: real HTTP, the wire types of
//! `blindfold-control`, answers like the real one, but each subscription update and each
//! endpoint deletion takes [`DELAY`], and it records what it saw and when.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use blindfold::control::{
    Candidate, CreateConference, CreateEndpoint, Created, EndpointCreated, Ice,
};

/// How long a subscription update or an endpoint deletion takes.
pub const DELAY: Duration = Duration::from_millis(300);

/// What the stand-in forwarder saw.
#[derive(Default)]
pub struct Seen {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub subscription_puts: AtomicUsize,
    /// (endpoint, when its deletion was answered).
    pub deleted: Mutex<Vec<(String, Instant)>>,
}

/// Starts the stand-in on its own thread (it runs until the process ends).
pub fn start(seen: Arc<Seen>) -> SocketAddr {
    async fn conference(Json(b): Json<CreateConference>) -> (StatusCode, Json<Created>) {
        let id = b.id.unwrap_or_else(|| "random".into());
        (StatusCode::CREATED, Json(Created { id }))
    }
    async fn endpoint(
        Path(_conf): Path<String>,
        Json(b): Json<CreateEndpoint>,
    ) -> (StatusCode, Json<EndpointCreated>) {
        let created = EndpointCreated {
            id: b.id.unwrap_or_default(),
            ice: Ice {
                ufrag: "ufrag".into(),
                pwd: "password-password-pass".into(),
            },
            candidates: vec![Candidate::from(
                "127.0.0.1:9".parse::<SocketAddr>().unwrap(),
            )],
        };
        (StatusCode::CREATED, Json(created))
    }
    async fn subscriptions(State(seen): State<Arc<Seen>>) -> StatusCode {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(DELAY).await;
        seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        seen.subscription_puts.fetch_add(1, Ordering::SeqCst);
        StatusCode::NO_CONTENT
    }
    async fn delete_endpoint(
        State(seen): State<Arc<Seen>>,
        Path((_conf, ep)): Path<(String, String)>,
    ) -> StatusCode {
        tokio::time::sleep(DELAY).await;
        seen.deleted.lock().unwrap().push((ep, Instant::now()));
        StatusCode::NO_CONTENT
    }
    let app = Router::new()
        // Answered at once: the service's health checks must not find it lost.
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/conferences", post(conference))
        .route(
            "/v1/conferences/{conf}",
            delete(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/v1/conferences/{conf}/endpoints", post(endpoint))
        .route(
            "/v1/conferences/{conf}/endpoints/{ep}",
            delete(delete_endpoint),
        )
        .route(
            "/v1/conferences/{conf}/endpoints/{ep}/tracks",
            put(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/v1/conferences/{conf}/endpoints/{ep}/subscriptions",
            put(subscriptions),
        )
        .with_state(seen);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}
