//! Request extractors whose rejections are JSON [`ApiError`]s rather than axum's plain
//! text: the size-limited JSON body and the path ids.
//!
//! Owns body and path parsing; must not decide anything about conferences.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{StatusCode, header, request::Parts};
use blindfold_control::ErrorCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;
use super::router::AppState;

/// A JSON body: size-limited, `Content-Type: application/json` unless empty (an empty
/// body counts as `{}`), unknown fields rejected by the types themselves.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.shared.body_limit;
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body larger than {limit} bytes"),
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
        if declared.is_some_and(|n| n > limit as u64) {
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
                ApiError::new(ErrorCode::InvalidBody, "could not read the request body")
            }
        })?;
        let text: &[u8] = if bytes.is_empty() {
            b"{}"
        } else if json_type != Some(true) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(ApiJson).map_err(|e| {
            let code = match e.classify() {
                serde_json::error::Category::Data => ErrorCode::InvalidBody,
                _ => ErrorCode::InvalidJson,
            };
            ApiError::new(code, e.to_string())
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

/// The path of a conference: `/v1/conferences/{conf}...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ConfPath {
    /// Conference id
    pub conf: String,
}

/// The path of an endpoint: `/v1/conferences/{conf}/endpoints/{ep}...`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct EndpointPath {
    /// Conference id
    pub conf: String,
    /// Endpoint id
    pub ep: String,
}

/// Path parameters, with a JSON 400 on failure.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| ApiError::new(ErrorCode::InvalidId, e.body_text()))
    }
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
}
