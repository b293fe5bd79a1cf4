//! The HTTP surface of the control API: wire types, handlers, authentication, error
//! mapping and the router, whose routes and OpenAPI document come from the same
//! `#[utoipa::path]` attributes (every route is registered through
//! [`utoipa_axum::routes!`], so the document cannot miss one).
//!
//! Owns request parsing and status codes only; every decision about conferences is the
//! [`Model`](super::model::Model)'s, reached through `Shared`. Must not hold the model
//! lock across an `.await`, and must not log ids, addresses or tokens at info level.
//!
//! # Status codes
//! | status | `error.code` | when |
//! |---|---|---|
//! | 400 | `invalid_json`, `invalid_body` | malformed JSON; unknown field, missing field or wrong type |
//! | 400 | `invalid_id` | an id (path or body) that is not 1..=64 of `[A-Za-z0-9_-]` |
//! | 401 | `unauthorized` | missing or wrong bearer token (everything but `/healthz`) |
//! | 404 | `conference_not_found`, `endpoint_not_found`, `no_such_route` | |
//! | 405 | `method_not_allowed` | |
//! | 409 | `conference_exists`, `endpoint_exists`, `ssrc_taken` | the id or SSRC is taken |
//! | 409 | `too_many_conferences`, `too_many_endpoints` | a count limit is reached; retry after deletions |
//! | 413 | `payload_too_large` | body over the limit |
//! | 415 | `unsupported_media_type` | a non-empty body without `Content-Type: application/json` |
//! | 422 | `too_many_tracks`, `too_many_ssrcs`, `too_many_subscriptions` | the body itself exceeds a limit |
//! | 422 | `invalid_value` | duplicate track id, SSRC or subscription; empty track; self-subscription; non-unicast address or port 0 |
//! | 503 | `draining` | `POST /v1/conferences` after SIGTERM |
//!
//! An empty request body counts as `{}`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tracing::debug;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Shared;
use crate::metrics::render_prometheus;
use blindfold_proto::model::{ModelError, Subscription, Track, TrackKind};
use blindfold_proto::redact::Redacted;

// ---------------------------------------------------------------------------------------
// Wire types

/// `POST /v1/conferences` body: `{}` or `{"id": "..."}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConference {
    /// Caller-chosen id (1..=64 of `[A-Za-z0-9_-]`); random when absent.
    pub id: Option<String>,
}

/// A created conference.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// The conference id.
    pub id: String,
}

/// `POST /v1/conferences/{conf}/endpoints` body: `{}` or `{"id": "..."}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Caller-chosen id (1..=64 of `[A-Za-z0-9_-]`); random when absent.
    pub id: Option<String>,
}

/// ICE-lite credentials for one endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ice {
    /// The forwarder's ufrag: the first half of the STUN USERNAME `ufrag:clientUfrag`.
    pub ufrag: String,
    /// The pwd keying MESSAGE-INTEGRITY.
    pub pwd: String,
}

/// A media address of the forwarder to send STUN and SRTP to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Candidate {
    /// IP address.
    #[schema(value_type = String, example = "192.0.2.10")]
    pub ip: IpAddr,
    /// UDP port.
    pub port: u16,
}

/// A created endpoint: its id, ICE credentials and the forwarder's candidates.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointCreated {
    /// The endpoint id.
    pub id: String,
    /// ICE credentials.
    pub ice: Ice,
    /// Where to send.
    pub candidates: Vec<Candidate>,
}

/// `PUT .../address` body: where a plain-RTP peer (recorder, gateway) receives.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    /// Unicast IP address.
    #[schema(value_type = String, example = "192.0.2.20")]
    pub ip: IpAddr,
    /// UDP port (1..=65535).
    pub port: u16,
}

/// One published track.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackJson {
    /// Track id, unique within the endpoint.
    pub id: String,
    /// What it carries.
    pub kind: TrackKind,
    /// Its SSRCs (simulcast layers, RTX); none may belong to another endpoint of the
    /// conference.
    pub ssrcs: Vec<u32>,
}

/// `PUT .../tracks` body: the complete set of the endpoint's tracks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TracksBody {
    /// Replaces the previous set.
    pub tracks: Vec<TrackJson>,
}

/// One subscription: receive `track` of `endpoint`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionJson {
    /// Publisher endpoint id (need not exist yet).
    pub endpoint: String,
    /// Its track id (need not exist yet).
    pub track: String,
}

/// `PUT .../subscriptions` body: the complete set of the endpoint's subscriptions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsBody {
    /// Replaces the previous set.
    pub subscriptions: Vec<SubscriptionJson>,
}

/// A subscription as stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionState {
    /// Publisher endpoint id.
    pub endpoint: String,
    /// Its track id.
    pub track: String,
    /// Whether the publisher and track exist now, so media flows.
    pub active: bool,
}

/// One endpoint of a conference. Addresses are never shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointState {
    /// The endpoint id.
    pub id: String,
    /// Whether it receives now: a declared address, or a STUN latch whose consent has
    /// not lapsed.
    pub latched: bool,
    /// For a STUN-latched endpoint, milliseconds until its consent lapses (0: lapsed,
    /// it no longer receives); `null` when unlatched or declared.
    pub consent_expires_in_ms: Option<u64>,
    /// Published tracks.
    pub tracks: Vec<TrackJson>,
    /// Subscriptions.
    pub subscriptions: Vec<SubscriptionState>,
}

/// A conference with its endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConferenceState {
    /// The conference id.
    pub id: String,
    /// Its endpoints, sorted by id.
    pub endpoints: Vec<EndpointState>,
}

/// One entry of the conference list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConferenceSummary {
    /// The conference id.
    pub id: String,
    /// How many endpoints it has.
    pub endpoints: usize,
}

/// All conferences, for a signalling service that restarted and resynchronises.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConferenceList {
    /// Sorted by id.
    pub conferences: Vec<ConferenceSummary>,
}

/// The error body of every 4xx and 5xx.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a human-readable message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `ssrc_taken` (see the module docs for the list).
    pub code: String,
    /// What went wrong, for humans.
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// Errors

/// An error response: status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        use ModelError as E;
        let (status, code) = match &e {
            E::InvalidId { .. } => (StatusCode::BAD_REQUEST, "invalid_id"),
            E::NoConference => (StatusCode::NOT_FOUND, "conference_not_found"),
            E::NoEndpoint => (StatusCode::NOT_FOUND, "endpoint_not_found"),
            E::ConferenceExists => (StatusCode::CONFLICT, "conference_exists"),
            E::EndpointExists => (StatusCode::CONFLICT, "endpoint_exists"),
            E::SsrcTaken { .. } => (StatusCode::CONFLICT, "ssrc_taken"),
            E::TooManyConferences { .. } => (StatusCode::CONFLICT, "too_many_conferences"),
            E::TooManyEndpoints { .. } => (StatusCode::CONFLICT, "too_many_endpoints"),
            E::TooManyTracks { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_tracks"),
            E::TooManySsrcs { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_many_ssrcs"),
            E::TooManySubscriptions { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "too_many_subscriptions")
            }
            E::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

// ---------------------------------------------------------------------------------------
// Extractors whose rejections are `ApiError`s, not axum's plain text

/// A JSON body: size-limited, `Content-Type: application/json` unless empty (an empty
/// body counts as `{}`), unknown fields rejected by the types themselves.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body larger than {} bytes", state.shared.body_limit),
            )
        };
        // Refuse a declared oversize body before reading any of it (a client that sent
        // `Expect: 100-continue` then never sends it); `DefaultBodyLimit` still bounds
        // chunked bodies while they are read.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.shared.body_limit as u64) {
            return Err(too_large());
        }
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(is_json_type);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(
                    r.status(),
                    "invalid_body",
                    "could not read the request body",
                )
            }
        })?;
        let text: &[u8] = if bytes.is_empty() {
            b"{}"
        } else if json_type != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(ApiJson).map_err(|e| {
            let code = match e.classify() {
                serde_json::error::Category::Data => "invalid_body",
                _ => "invalid_json",
            };
            ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
        })
    }
}

fn is_json_type(v: &str) -> bool {
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters, with a JSON 400 on failure.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_id", e.body_text()))
    }
}

// ---------------------------------------------------------------------------------------
// State, router and OpenAPI

/// What every handler gets.
#[derive(Clone)]
pub(super) struct AppState {
    shared: Arc<Shared>,
    openapi: Arc<str>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "blindfold control API",
        description = "Drives a keyless media forwarder: conferences, endpoints, their tracks \
                       and subscriptions. Every request but /healthz needs \
                       `Authorization: Bearer TOKEN`. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route with its documentation. The only place routes are added.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_conferences, create_conference))
        .routes(routes!(get_conference, delete_conference))
        .routes(routes!(create_endpoint))
        .routes(routes!(delete_endpoint))
        .routes(routes!(put_address))
        .routes(routes!(put_tracks))
        .routes(routes!(put_subscriptions))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics))
        .routes(routes!(healthz))
}

/// The OpenAPI 3 document of the control API, as served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

/// The complete service: routes, JSON fallbacks, authentication and the body limit.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let (router, doc) = api_router().split_for_parts();
    let openapi: Arc<str> = match doc.to_json() {
        Ok(s) => s.into(),
        // Serialising a derived document does not fail; serve an empty object if it does.
        Err(_) => "{}".into(),
    };
    let body_limit = shared.body_limit;
    let state = AppState { shared, openapi };
    router
        .fallback(no_such_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(deadline))
        .with_state(state)
}

/// Whole-request deadline (headers are bounded separately by the connection's
/// header-read timeout): a client that trickles its body cannot hold a handler forever.
pub(super) const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not completed in time",
        )
        .into_response(),
    }
}

async fn no_such_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_such_route", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// SHA-256 of a token: what is kept and compared, so the comparison is constant-time
/// and independent of the token's length.
pub(super) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = st.shared.token.as_ref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim_start())
        });
    let ok = given.is_some_and(|t| bool::from(token_digest(t).ct_eq(expected)));
    if !ok {
        debug!("control request refused: bad or missing bearer token");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
        .into_response();
    }
    next.run(req).await
}

// ---------------------------------------------------------------------------------------
// Handlers

/// Lists all conferences with their endpoint counts.
#[utoipa::path(
    get,
    path = "/v1/conferences",
    tag = "conferences",
    responses(
        (status = 200, description = "All conferences", body = ConferenceList),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
async fn list_conferences(State(st): State<AppState>) -> Json<ConferenceList> {
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
        (status = 400, description = "Malformed body or invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "Id taken, or `max_conferences` reached", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Draining: no new conferences", body = ErrorBody),
    )
)]
async fn create_conference(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<CreateConference>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    if st.shared.draining.load(Ordering::Acquire) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the forwarder is shutting down and takes no new conferences",
        ));
    }
    let id = st.shared.change(|m| m.create_conference(body.id))?;
    debug!(conf = %Redacted(&id), "conference created");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// A conference's endpoints with their tracks, subscriptions and latch state.
#[utoipa::path(
    get,
    path = "/v1/conferences/{conf}",
    tag = "conferences",
    params(("conf" = String, Path, description = "Conference id")),
    responses(
        (status = 200, description = "The conference", body = ConferenceState),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
    )
)]
async fn get_conference(
    State(st): State<AppState>,
    ApiPath(conf): ApiPath<String>,
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
            tracks: e.tracks.into_iter().map(track_json).collect(),
            subscriptions: e
                .subscriptions
                .into_iter()
                .map(|(s, active)| SubscriptionState {
                    endpoint: s.endpoint,
                    track: s.track,
                    active,
                })
                .collect(),
        })
        .collect();
    Ok(Json(ConferenceState {
        id: info.id,
        endpoints,
    }))
}

/// Deletes a conference and all its endpoints; their media stops at once.
#[utoipa::path(
    delete,
    path = "/v1/conferences/{conf}",
    tag = "conferences",
    params(("conf" = String, Path, description = "Conference id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
    )
)]
async fn delete_conference(
    State(st): State<AppState>,
    ApiPath(conf): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.shared.change(|m| m.delete_conference(&conf))?;
    debug!(conf = %Redacted(&conf), "conference deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Adds an endpoint with fresh ICE credentials.
#[utoipa::path(
    post,
    path = "/v1/conferences/{conf}/endpoints",
    tag = "endpoints",
    params(("conf" = String, Path, description = "Conference id")),
    request_body(content = Option<CreateEndpoint>, description = "`{}` (or no body) for a random id"),
    responses(
        (status = 201, description = "Created", body = EndpointCreated),
        (status = 400, description = "Malformed body or invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference", body = ErrorBody),
        (status = 409, description = "Id taken, or `max_endpoints_per_conference` reached", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn create_endpoint(
    State(st): State<AppState>,
    ApiPath(conf): ApiPath<String>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> Result<(StatusCode, Json<EndpointCreated>), ApiError> {
    let ep = st.shared.change(|m| m.create_endpoint(&conf, body.id))?;
    debug!(conf = %Redacted(&conf), ep = %Redacted(&ep.id), "endpoint created");
    let candidates = st
        .shared
        .candidates
        .iter()
        .map(|a| Candidate {
            ip: a.ip(),
            port: a.port(),
        })
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
    params(
        ("conf" = String, Path, description = "Conference id"),
        ("ep" = String, Path, description = "Endpoint id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference or endpoint", body = ErrorBody),
    )
)]
async fn delete_endpoint(
    State(st): State<AppState>,
    ApiPath((conf, ep)): ApiPath<(String, String)>,
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
    params(
        ("conf" = String, Path, description = "Conference id"),
        ("ep" = String, Path, description = "Endpoint id"),
    ),
    request_body = AddressBody,
    responses(
        (status = 204, description = "Declared"),
        (status = 400, description = "Malformed body or invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference or endpoint", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Not a unicast address, or port 0", body = ErrorBody),
    )
)]
async fn put_address(
    State(st): State<AppState>,
    ApiPath((conf, ep)): ApiPath<(String, String)>,
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
    params(
        ("conf" = String, Path, description = "Conference id"),
        ("ep" = String, Path, description = "Endpoint id"),
    ),
    request_body = TracksBody,
    responses(
        (status = 204, description = "Replaced"),
        (status = 400, description = "Malformed body or invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference or endpoint", body = ErrorBody),
        (status = 409, description = "An SSRC is owned by another endpoint of the conference", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Over a limit, duplicate track id or SSRC, or a track without SSRCs", body = ErrorBody),
    )
)]
async fn put_tracks(
    State(st): State<AppState>,
    ApiPath((conf, ep)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<TracksBody>,
) -> Result<StatusCode, ApiError> {
    let tracks = body
        .tracks
        .into_iter()
        .map(|t| Track {
            id: t.id,
            kind: t.kind,
            ssrcs: t.ssrcs,
        })
        .collect();
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
    params(
        ("conf" = String, Path, description = "Conference id"),
        ("ep" = String, Path, description = "Endpoint id"),
    ),
    request_body = SubscriptionsBody,
    responses(
        (status = 204, description = "Replaced"),
        (status = 400, description = "Malformed body or invalid id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conference or endpoint", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Over the limit, duplicate, or own track", body = ErrorBody),
    )
)]
async fn put_subscriptions(
    State(st): State<AppState>,
    ApiPath((conf, ep)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SubscriptionsBody>,
) -> Result<StatusCode, ApiError> {
    let subs = body
        .subscriptions
        .into_iter()
        .map(|s| Subscription {
            endpoint: s.endpoint,
            track: s.track,
        })
        .collect();
    st.shared
        .change(|m| m.set_subscriptions(&conf, &ep, subs))?;
    debug!(ep = %Redacted(&ep), "subscriptions replaced");
    Ok(StatusCode::NO_CONTENT)
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3 document", content_type = "application/json"),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
async fn openapi_json(State(st): State<AppState>) -> Response {
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
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
async fn metrics(State(st): State<AppState>) -> Response {
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
async fn healthz(State(st): State<AppState>) -> (StatusCode, &'static str) {
    if st.shared.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    }
}

fn track_json(t: Track) -> TrackJson {
    TrackJson {
        id: t.id,
        kind: t.kind,
        ssrcs: t.ssrcs,
    }
}

#[cfg(any(test, feature = "fuzzing"))]
/// A fuzz entry point over the control API's JSON bodies: each body type is parsed with
/// the server's own serde types and, when it parses, applied to a model holding one
/// conference with two endpoints, exactly as the handlers do. Must never panic.
pub fn fuzz_json(data: &[u8]) {
    use blindfold_proto::model::Model;
    let config = crate::config::ServeArgs::default();
    let mut model = Model::new(
        config.limits(),
        blindfold_proto::table::IngressLimits::UNLIMITED,
    );
    let _ = model.create_conference(Some("c".into()));
    let _ = model.create_endpoint("c", Some("a".into()));
    let _ = model.create_endpoint("c", Some("b".into()));
    if let Ok(b) = serde_json::from_slice::<CreateConference>(data) {
        let _ = model.create_conference(b.id);
    }
    if let Ok(b) = serde_json::from_slice::<CreateEndpoint>(data) {
        let _ = model.create_endpoint("c", b.id);
    }
    if let Ok(b) = serde_json::from_slice::<AddressBody>(data) {
        let _ = model.set_address("c", "a", SocketAddr::new(b.ip, b.port));
    }
    if let Ok(b) = serde_json::from_slice::<TracksBody>(data) {
        let tracks = b
            .tracks
            .into_iter()
            .map(|t| Track {
                id: t.id,
                kind: t.kind,
                ssrcs: t.ssrcs,
            })
            .collect();
        let _ = model.set_tracks("c", "a", tracks);
    }
    if let Ok(b) = serde_json::from_slice::<SubscriptionsBody>(data) {
        let subs = b
            .subscriptions
            .into_iter()
            .map(|s| Subscription {
                endpoint: s.endpoint,
                track: s.track,
            })
            .collect();
        let _ = model.set_subscriptions("c", "b", subs);
    }
    let _ = model.conference("c", std::time::Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json_type("application/json"));
        assert!(is_json_type("Application/JSON; charset=utf-8"));
        assert!(is_json_type("application/merge-patch+json"));
        assert!(!is_json_type("text/plain"));
        assert!(!is_json_type(""));
    }

    #[test]
    fn every_model_error_is_a_4xx_with_a_code() {
        for e in [
            ModelError::InvalidId { what: "x" },
            ModelError::NoConference,
            ModelError::NoEndpoint,
            ModelError::ConferenceExists,
            ModelError::EndpointExists,
            ModelError::TooManyConferences { max: 1 },
            ModelError::TooManyEndpoints { max: 1 },
            ModelError::TooManyTracks { max: 1 },
            ModelError::TooManySsrcs { max: 1 },
            ModelError::TooManySubscriptions { max: 1 },
            ModelError::SsrcTaken { ssrc: 1 },
            ModelError::Invalid("x"),
        ] {
            let a = ApiError::from(e);
            assert!(a.status.is_client_error(), "{a:?}");
            assert!(!a.code.is_empty());
        }
    }

    #[test]
    fn document_has_bearer_security_and_open_healthz() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
        assert_eq!(
            doc["paths"]["/healthz"]["get"]["security"],
            serde_json::json!([{}])
        );
        assert!(doc["components"]["schemas"]["ConferenceState"].is_object());
        // an empty body is accepted for the two POSTs, so their bodies are optional
        let post = &doc["paths"]["/v1/conferences"]["post"]["requestBody"];
        assert_ne!(post["required"], true, "{post}");
        let put = &doc["paths"]["/v1/conferences/{conf}/endpoints/{ep}/tracks"]["put"];
        assert_eq!(put["requestBody"]["required"], true);
    }

    #[test]
    fn token_digest_differs_by_token() {
        assert_ne!(token_digest("a"), token_digest("b"));
        assert!(bool::from(token_digest("a").ct_eq(&token_digest("a"))));
    }
}
