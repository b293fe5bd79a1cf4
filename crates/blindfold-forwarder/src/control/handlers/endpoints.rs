//! `/v1/conferences/{conf}/endpoints[/{ep}[/address|/tracks|/subscriptions|/receive]]`:
//! create and delete endpoints, declare a plain-RTP peer's address, replace tracks and
//! subscriptions, set what the forwarder chooses for the endpoint (last-N, top-K, pins).
//!
//! Owns these operations' parsing and answers; must never log an address above debug
//! level, and then only redacted.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use blindfold_control::{
    AddressBody, Candidate, CreateEndpoint, EndpointCreated, ErrorBody, Ice, ReceiveJson,
    SubscriptionsBody, TracksBody,
};
use blindfold_proto::redact::Redacted;
use tracing::debug;

use super::super::error::ApiError;
use super::super::extract::{ApiJson, ApiPath, ConfPath, EndpointPath};
use super::super::openapi::{ConferenceBodyErrors, EndpointBodyErrors, EndpointErrors};
use super::super::router::AppState;
use super::{receive_in, subscription_in, track_in};

/// Adds an endpoint with fresh ICE credentials.
#[utoipa::path(
    post,
    path = "/v1/conferences/{conf}/endpoints",
    tag = "endpoints",
    params(ConfPath),
    request_body(content = Option<CreateEndpoint>, description = "`{}` (or no body) for a random id"),
    responses(
        (status = 201, description = "Created", body = EndpointCreated),
        ConferenceBodyErrors,
        (status = 409, description = "Id taken, or `max_endpoints_per_conference` reached", body = ErrorBody),
    )
)]
pub(crate) async fn create_endpoint(
    State(st): State<AppState>,
    ApiPath(ConfPath { conf }): ApiPath<ConfPath>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> Result<(StatusCode, Json<EndpointCreated>), ApiError> {
    let ep = st.shared.change(|m| m.create_endpoint(&conf, body.id))?;
    debug!(conf = %Redacted(&conf), ep = %Redacted(&ep.id), "endpoint created");
    let candidates = st
        .shared
        .candidates
        .iter()
        .map(|&a| Candidate::from(a))
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(EndpointCreated {
            id: ep.id,
            ice: Ice {
                ufrag: ep.ufrag,
                pwd: ep.pwd,
            },
            candidates,
        }),
    ))
}

/// Removes an endpoint: it stops sending and receiving at once.
#[utoipa::path(
    delete,
    path = "/v1/conferences/{conf}/endpoints/{ep}",
    tag = "endpoints",
    params(EndpointPath),
    responses(
        (status = 204, description = "Deleted"),
        EndpointErrors,
    )
)]
pub(crate) async fn delete_endpoint(
    State(st): State<AppState>,
    ApiPath(EndpointPath { conf, ep }): ApiPath<EndpointPath>,
) -> Result<StatusCode, ApiError> {
    st.shared.change(|m| m.delete_endpoint(&conf, &ep))?;
    debug!(conf = %Redacted(&conf), ep = %Redacted(&ep), "endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Declares the address of a plain-RTP peer (no STUN): it receives there at once and may
/// send from there.
#[utoipa::path(
    put,
    path = "/v1/conferences/{conf}/endpoints/{ep}/address",
    tag = "endpoints",
    params(EndpointPath),
    request_body = AddressBody,
    responses(
        (status = 204, description = "Declared"),
        EndpointBodyErrors,
        (status = 422, description = "Not a unicast address, or port 0", body = ErrorBody),
    )
)]
pub(crate) async fn put_address(
    State(st): State<AppState>,
    ApiPath(EndpointPath { conf, ep }): ApiPath<EndpointPath>,
    ApiJson(body): ApiJson<AddressBody>,
) -> Result<StatusCode, ApiError> {
    let addr = SocketAddr::new(body.ip, body.port);
    st.shared.change(|m| m.set_address(&conf, &ep, addr))?;
    debug!(ep = %Redacted(&ep), addr = %Redacted(addr), "address declared");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the set of tracks an endpoint publishes.
#[utoipa::path(
    put,
    path = "/v1/conferences/{conf}/endpoints/{ep}/tracks",
    tag = "endpoints",
    params(EndpointPath),
    request_body = TracksBody,
    responses(
        (status = 204, description = "Replaced"),
        EndpointBodyErrors,
        (status = 409, description = "An SSRC is owned by another endpoint of the conference", body = ErrorBody),
        (status = 422, description = "Over a limit, duplicate track id or SSRC, a track without SSRCs, an extension on the wrong kind of track or id 0, or simulcast without frame marking or with more than 4 layers", body = ErrorBody),
    )
)]
pub(crate) async fn put_tracks(
    State(st): State<AppState>,
    ApiPath(EndpointPath { conf, ep }): ApiPath<EndpointPath>,
    ApiJson(body): ApiJson<TracksBody>,
) -> Result<StatusCode, ApiError> {
    let tracks = body.tracks.into_iter().map(track_in).collect();
    st.shared.change(|m| m.set_tracks(&conf, &ep, tracks))?;
    debug!(ep = %Redacted(&ep), "tracks replaced");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the set of tracks an endpoint receives. A subscription may name an endpoint
/// or track that does not exist yet: it is kept (`active: false`) and starts as soon as
/// the track is published.
#[utoipa::path(
    put,
    path = "/v1/conferences/{conf}/endpoints/{ep}/subscriptions",
    tag = "endpoints",
    params(EndpointPath),
    request_body = SubscriptionsBody,
    responses(
        (status = 204, description = "Replaced"),
        EndpointBodyErrors,
        (status = 422, description = "Over the limit, duplicate, own track, or a layer above 3", body = ErrorBody),
    )
)]
pub(crate) async fn put_subscriptions(
    State(st): State<AppState>,
    ApiPath(EndpointPath { conf, ep }): ApiPath<EndpointPath>,
    ApiJson(body): ApiJson<SubscriptionsBody>,
) -> Result<StatusCode, ApiError> {
    let subs = body
        .subscriptions
        .into_iter()
        .map(subscription_in)
        .collect();
    st.shared
        .change(|m| m.set_subscriptions(&conf, &ep, subs))?;
    debug!(ep = %Redacted(&ep), "subscriptions replaced");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets what the forwarder chooses for this endpoint: last-N (video from the N most
/// recent speakers, plus pins), top-K audio, and pins (endpoint ids, which need not exist
/// yet). Absent values take the conference's (`PUT .../settings`).
#[utoipa::path(
    put,
    path = "/v1/conferences/{conf}/endpoints/{ep}/receive",
    tag = "endpoints",
    params(EndpointPath),
    request_body = ReceiveJson,
    responses(
        (status = 204, description = "Set"),
        EndpointBodyErrors,
        (status = 422, description = "Too many pins, a duplicate pin, or itself pinned", body = ErrorBody),
    )
)]
pub(crate) async fn put_receive(
    State(st): State<AppState>,
    ApiPath(EndpointPath { conf, ep }): ApiPath<EndpointPath>,
    ApiJson(body): ApiJson<ReceiveJson>,
) -> Result<StatusCode, ApiError> {
    st.shared
        .change(|m| m.set_receive(&conf, &ep, receive_in(body)))?;
    debug!(ep = %Redacted(&ep), "receive choices set");
    Ok(StatusCode::NO_CONTENT)
}
