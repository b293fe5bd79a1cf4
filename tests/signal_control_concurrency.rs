//! Control calls are made without holding the conference, and independent ones run
//! concurrently. Against a forwarder whose subscription updates each take 300 ms, a
//! publish in an 8-member call sends its 7 updates at once rather than one after another,
//! and a key message in the same call is relayed while they are pending. Before, every
//! call ran on the blocking pool under the conference's lock: the 7 updates took 2.1 s in
//! a row and the key message waited for all of them.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post, put};
use blindfold::control::{
    Candidate, CreateConference, CreateEndpoint, Created, EndpointCreated, Ice,
};
use common::signal::*;
use common::*;

const DELAY: Duration = Duration::from_millis(300);
const MEMBERS: u64 = 8;

/// What the stand-in forwarder saw.
#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    subscription_puts: AtomicUsize,
}

/// A forwarder control API that answers like the real one but takes [`DELAY`] over every
/// subscription update. Runs on its own thread until the process ends.
fn slow_forwarder(seen: Arc<Seen>) -> SocketAddr {
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
    let app = Router::new()
        .route("/v1/conferences", post(conference))
        .route(
            "/v1/conferences/{conf}",
            delete(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/v1/conferences/{conf}/endpoints", post(endpoint))
        .route(
            "/v1/conferences/{conf}/endpoints/{ep}",
            delete(|| async { StatusCode::NO_CONTENT }),
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

#[test]
fn a_publish_updates_subscriptions_concurrently_and_relays_go_on_meanwhile() {
    let seen = Arc::new(Seen::default());
    let control = slow_forwarder(seen.clone());
    let signal = SignalProcess::start(control, &[]);
    let conf = eid(1);
    let mut members: Vec<RawWs> = (0..MEMBERS)
        .map(|n| {
            let mut ws = RawWs::open(signal.addr);
            ws.join(&conf, &eid(100 + n), true);
            ws
        })
        .collect();
    // Nobody publishes yet, so no member needs a subscription update.
    assert_eq!(seen.subscription_puts.load(Ordering::SeqCst), 0);

    let started = Instant::now();
    members[0]
        .send_text(r#"{"v":1,"type":"publish","tracks":[{"id":"mic","kind":"audio","ssrcs":[7]}]}"#)
        .unwrap();
    // Member 1 hears of the tracks (they are on the forwarder); the 7 subscription updates
    // are now pending. A key message from it to member 2 goes through meanwhile.
    members[1].recv_type("tracks").expect("tracks announced");
    let relay = Instant::now();
    let key = format!(
        r#"{{"v":1,"type":"key","to":"{}","message":"abcd"}}"#,
        eid(102)
    );
    members[1].send_text(&key).unwrap();
    members[2].recv_type("key").expect("key message relayed");
    let relayed_in = relay.elapsed();

    assert!(wait_for(
        || seen.subscription_puts.load(Ordering::SeqCst) == (MEMBERS - 1) as usize
    ));
    let all_in = started.elapsed();
    let max = seen.max_in_flight.load(Ordering::SeqCst);
    eprintln!(
        "publish in a {MEMBERS}-member call: {} updates of {DELAY:?} each done in {all_in:?}, \
         at most {max} at once; a key message relayed in {relayed_in:?} meanwhile",
        MEMBERS - 1
    );
    assert!(max >= 2, "the subscription updates ran one at a time");
    assert!(
        relayed_in < DELAY,
        "the key message waited {relayed_in:?} for the forwarder calls"
    );
}
