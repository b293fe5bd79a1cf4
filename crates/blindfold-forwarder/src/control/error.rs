//! Error answers of the control API: a stable [`ErrorCode`] (which fixes the status) and
//! a message, written as the JSON [`ErrorBody`], and the mapping of every model error to
//! its code.
//!
//! Owns that mapping only; the codes and their statuses are `blindfold-control`'s. Must
//! not put an id, address or token in a message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use blindfold_control::{ErrorBody, ErrorCode, ErrorDetail};
use blindfold_proto::model::ModelError;

/// An error response: stable code (and so its status) and message.
#[derive(Debug)]
pub struct ApiError {
    pub(super) code: ErrorCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        use ErrorCode as C;
        use ModelError as E;
        let code = match &e {
            E::InvalidId { .. } => C::InvalidId,
            E::NoConference => C::ConferenceNotFound,
            E::NoEndpoint => C::EndpointNotFound,
            E::ConferenceExists => C::ConferenceExists,
            E::EndpointExists => C::EndpointExists,
            E::SsrcTaken { .. } => C::SsrcTaken,
            E::TooManyConferences { .. } => C::TooManyConferences,
            E::TooManyEndpoints { .. } => C::TooManyEndpoints,
            E::TooManyTracks { .. } => C::TooManyTracks,
            E::TooManySsrcs { .. } => C::TooManySsrcs,
            E::TooManySubscriptions { .. } => C::TooManySubscriptions,
            E::Invalid(_) => C::InvalidValue,
        };
        Self::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(a.status().is_client_error(), "{a:?}");
        }
    }

    #[test]
    fn capacity_is_not_reported_as_taken() {
        let a = ApiError::from(ModelError::TooManyConferences { max: 1 });
        assert!(a.code.is_capacity() && !a.code.is_taken());
        let a = ApiError::from(ModelError::ConferenceExists);
        assert!(a.code.is_taken() && !a.code.is_capacity());
    }
}
