//! The control API's router: every route with its documentation (the only place routes
//! are added), the JSON fallbacks, authentication, the body limit and the whole-request
//! deadline, and the OpenAPI document derived from the same routes.
//!
//! Owns the assembly only; handlers live in `handlers/`, the document's frame in
//! `openapi.rs`. Must not add a route outside [`api_router`].

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use blindfold_control::ErrorCode;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Shared;
use super::auth::authenticate;
use super::error::ApiError;
use super::handlers::{conferences, endpoints, events, meta};
use super::openapi::ApiDoc;

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(super) shared: Arc<Shared>,
    pub(super) openapi: Arc<str>,
}

/// Every route with its documentation. The only place routes are added.
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            conferences::list_conferences,
            conferences::create_conference
        ))
        .routes(routes!(
            conferences::get_conference,
            conferences::delete_conference
        ))
        .routes(routes!(endpoints::create_endpoint))
        .routes(routes!(endpoints::delete_endpoint))
        .routes(routes!(endpoints::put_address))
        .routes(routes!(endpoints::put_tracks))
        .routes(routes!(endpoints::put_subscriptions))
        .routes(routes!(endpoints::put_receive))
        .routes(routes!(conferences::put_settings))
        .routes(routes!(events::events))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::healthz))
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
            ErrorCode::RequestTimeout,
            "the request was not completed in time",
        )
        .into_response(),
    }
}

async fn no_such_route() -> ApiError {
    ApiError::new(ErrorCode::NoSuchRoute, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}
