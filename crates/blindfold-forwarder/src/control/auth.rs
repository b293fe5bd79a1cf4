//! Bearer-token authentication of the control API: every request but `/healthz` carries
//! `Authorization: Bearer TOKEN`, compared as a SHA-256 digest in constant time.
//!
//! Owns the check only; must never log or echo a token.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blindfold_control::ErrorCode;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tracing::debug;

use super::error::ApiError;
use super::router::AppState;

/// SHA-256 of a token: what is kept and compared, so the comparison is constant-time
/// and independent of the token's length.
pub(super) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The middleware: passes authenticated requests (and `/healthz`) on, answers 401
/// `unauthorized` otherwise. Without a configured token everything passes (the server
/// then listens on loopback only).
pub(super) async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
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
        return ApiError::new(ErrorCode::Unauthorized, "missing or wrong bearer token")
            .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_digest_differs_by_token() {
        assert_ne!(token_digest("a"), token_digest("b"));
        assert!(bool::from(token_digest("a").ct_eq(&token_digest("a"))));
    }
}
