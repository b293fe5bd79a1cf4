//! The API about itself: its OpenAPI document, the Prometheus metrics and liveness.
//!
//! Owns these three answers; no metric label may carry an id or an address.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::super::Shared;
use super::super::openapi::AuthErrors;
use super::super::router::AppState;
use crate::metrics::render_prometheus;

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3 document", content_type = "application/json"),
        AuthErrors,
    )
)]
pub(crate) async fn openapi_json(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        st.openapi.to_string(),
    )
        .into_response()
}

/// Prometheus metrics: per-shard counters and control-plane gauges. No label carries an
/// id or address.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        AuthErrors,
    )
)]
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    let extra = control_gauges(&st.shared);
    let text = render_prometheus(&st.shared.metrics, &extra);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn control_gauges(shared: &Shared) -> String {
    let counts = shared.lock().counts(Instant::now());
    let draining = u8::from(shared.draining.load(Ordering::Acquire));
    let mut out = String::with_capacity(512);
    for (name, help, value) in [
        (
            "blindfold_conferences",
            "Conferences in the control model.",
            counts.conferences,
        ),
        (
            "blindfold_endpoints",
            "Endpoints in the control model.",
            counts.endpoints,
        ),
        (
            "blindfold_latched_endpoints",
            "Endpoints with a declared address or an unexpired STUN consent.",
            counts.latched,
        ),
        (
            "blindfold_draining",
            "1 while refusing new conferences (SIGTERM).",
            usize::from(draining),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    let name = "blindfold_speaker_changes_total";
    out.push_str(&format!(
        "# HELP {name} Dominant-speaker changes decided, all conferences.\n# TYPE {name} counter\n{name} {}\n",
        shared.speaker_changes.load(Ordering::Relaxed)
    ));
    out
}

/// Liveness: `ok`, or 503 `draining` after SIGTERM. Needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "Serving", body = String, content_type = "text/plain"),
        (status = 503, description = "Draining", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn healthz(State(st): State<AppState>) -> (StatusCode, &'static str) {
    if st.shared.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    }
}
