//! `/v1/conferences`, `/v1/conferences/{conf}` and `.../settings`: list, create,
//! inspect, delete, and set what the forwarder chooses for the conference.
//!
//! Owns these operations' parsing and answers; must never show an address.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use blindfold_control::{
    ConferenceList, ConferenceSettings, ConferenceState, ConferenceSummary, CreateConference,
    Created, EndpointState, ErrorBody, ErrorCode, SubscriptionState,
};
use blindfold_proto::redact::Redacted;
use tracing::debug;

use super::super::error::ApiError;
use super::super::extract::{ApiJson, ApiPath, ConfPath};
use super::super::openapi::{AuthErrors, BodyErrors, ConferenceBodyErrors, ConferenceErrors};
use super::super::router::AppState;
use super::{receive_out, settings_in, settings_out, track_out};

/// Lists all conferences with their endpoint counts.
#[utoipa::path(
    get,
    path = "/v1/conferences",
    tag = "conferences",
    responses(
        (status = 200, description = "All conferences", body = ConferenceList),
        AuthErrors,
    )
)]
pub(crate) async fn list_conferences(State(st): State<AppState>) -> Json<ConferenceList> {
    let conferences = st
        .shared
        .lock()
        .list()
        .into_iter()
        .map(|(id, endpoints)| ConferenceSummary { id, endpoints })
        .collect();
    Json(ConferenceList { conferences })
}

/// Creates a conference. Refused with 503 once draining.
#[utoipa::path(
    post,
    path = "/v1/conferences",
    tag = "conferences",
    request_body(content = Option<CreateConference>, description = "`{}` (or no body) for a random id"),
    responses(
        (status = 201, description = "Created", body = Created),
        BodyErrors,
        (status = 409, description = "Id taken, or `max_conferences` reached", body = ErrorBody),
        (status = 503, description = "Draining: no new conferences", body = ErrorBody),
    )
)]
pub(crate) async fn create_conference(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreateConference>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    if st.shared.draining.load(Ordering::Acquire) {
        return Err(ApiError::new(
            ErrorCode::Draining,
            "the forwarder is shutting down and takes no new conferences",
        ));
    }
    let id = st.shared.change(|m| {
        let (id, mut updates) = m.create_conference(body.id)?;
        if let Some(s) = body.settings {
            let ((), more) = m.set_conference_settings(&id, settings_in(s))?;
            updates.extend(more);
        }
        Ok((id, updates))
    })?;
    debug!(conf = %Redacted(&id), "conference created");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// A conference's endpoints with their tracks, subscriptions and latch state.
#[utoipa::path(
    get,
    path = "/v1/conferences/{conf}",
    tag = "conferences",
    params(ConfPath),
    responses(
        (status = 200, description = "The conference", body = ConferenceState),
        ConferenceErrors,
    )
)]
pub(crate) async fn get_conference(
    State(st): State<AppState>,
    ApiPath(ConfPath { conf }): ApiPath<ConfPath>,
) -> Result<Json<ConferenceState>, ApiError> {
    let info = st.shared.lock().conference(&conf, Instant::now())?;
    let endpoints = info
        .endpoints
        .into_iter()
        .map(|e| EndpointState {
            id: e.id,
            latched: e.latched,
            consent_expires_in_ms: e
                .consent_expires_in
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            tracks: e.tracks.into_iter().map(track_out).collect(),
            subscriptions: e
                .subscriptions
                .into_iter()
                .map(|(s, active)| SubscriptionState {
                    endpoint: s.endpoint,
                    track: s.track,
                    active,
                    layer: s.layer,
                    paused: s.paused,
                })
                .collect(),
            receive: receive_out(e.receive),
        })
        .collect();
    Ok(Json(ConferenceState {
        id: info.id,
        endpoints,
        settings: settings_out(info.settings),
        dominant: info.dominant,
    }))
}

/// Sets what the forwarder chooses for the conference's receivers: speaker detection
/// (on by default; off, no audio level is read and no speaker event sent), and default
/// last-N and top-K audio. Takes effect at once (video switches at key frames).
#[utoipa::path(
    put,
    path = "/v1/conferences/{conf}/settings",
    tag = "conferences",
    params(ConfPath),
    request_body = ConferenceSettings,
    responses(
        (status = 204, description = "Set"),
        ConferenceBodyErrors,
    )
)]
pub(crate) async fn put_settings(
    State(st): State<AppState>,
    ApiPath(ConfPath { conf }): ApiPath<ConfPath>,
    ApiJson(body): ApiJson<ConferenceSettings>,
) -> Result<StatusCode, ApiError> {
    st.shared
        .change(|m| m.set_conference_settings(&conf, settings_in(body)))?;
    debug!(conf = %Redacted(&conf), "conference settings set");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a conference and all its endpoints; their media stops at once.
#[utoipa::path(
    delete,
    path = "/v1/conferences/{conf}",
    tag = "conferences",
    params(ConfPath),
    responses(
        (status = 204, description = "Deleted"),
        ConferenceErrors,
    )
)]
pub(crate) async fn delete_conference(
    State(st): State<AppState>,
    ApiPath(ConfPath { conf }): ApiPath<ConfPath>,
) -> Result<StatusCode, ApiError> {
    st.shared.change(|m| m.delete_conference(&conf))?;
    debug!(conf = %Redacted(&conf), "conference deleted");
    Ok(StatusCode::NO_CONTENT)
}
