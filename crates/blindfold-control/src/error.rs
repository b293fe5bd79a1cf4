//! The control API's error body and its stable codes: each code has exactly one HTTP
//! status, so the server derives the status from the code and a client can classify an
//! answer without parsing messages.
//!
//! Owns the code table only; must not know about the model or about transport.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error body of every 4xx and 5xx.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a human-readable message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `ssrc_taken` (see the module docs for the list).
    pub code: String,
    /// What went wrong, for humans.
    pub message: String,
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal),)*) => {
        /// Every `error.code` the API answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, for tests and documentation.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in `error.code`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status this code is answered with.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// The code named `s`, if the API has it.
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s {
                    $($code => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// Malformed JSON.
    InvalidJson = ("invalid_json", 400),
    /// Unknown field, missing field, wrong type, or an unreadable body.
    InvalidBody = ("invalid_body", 400),
    /// An id (path or body) that is not 1..=64 of `[A-Za-z0-9_-]`.
    InvalidId = ("invalid_id", 400),
    /// Missing or wrong bearer token.
    Unauthorized = ("unauthorized", 401),
    /// No such conference.
    ConferenceNotFound = ("conference_not_found", 404),
    /// No such endpoint.
    EndpointNotFound = ("endpoint_not_found", 404),
    /// No such route.
    NoSuchRoute = ("no_such_route", 404),
    /// The route exists, the method does not.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// The request did not complete within the server's deadline.
    RequestTimeout = ("request_timeout", 408),
    /// The conference id is taken.
    ConferenceExists = ("conference_exists", 409),
    /// The endpoint id is taken.
    EndpointExists = ("endpoint_exists", 409),
    /// An SSRC is owned by another endpoint of the conference.
    SsrcTaken = ("ssrc_taken", 409),
    /// `max_conferences` is reached; retry after deletions.
    TooManyConferences = ("too_many_conferences", 409),
    /// `max_endpoints_per_conference` is reached; retry after deletions.
    TooManyEndpoints = ("too_many_endpoints", 409),
    /// The body is over the size limit.
    PayloadTooLarge = ("payload_too_large", 413),
    /// A non-empty body without `Content-Type: application/json`.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// The body has more tracks than allowed.
    TooManyTracks = ("too_many_tracks", 422),
    /// A track has more SSRCs than allowed.
    TooManySsrcs = ("too_many_ssrcs", 422),
    /// The body has more subscriptions than allowed.
    TooManySubscriptions = ("too_many_subscriptions", 422),
    /// Duplicates, an empty track, a self-subscription, a non-unicast address or port 0.
    InvalidValue = ("invalid_value", 422),
    /// The forwarder is shutting down and takes no new conferences.
    Draining = ("draining", 503),
}

impl ErrorCode {
    /// Whether this code says a count limit is reached (capacity exhaustion), as opposed
    /// to a taken id or a bad request.
    pub const fn is_capacity(self) -> bool {
        matches!(
            self,
            ErrorCode::TooManyConferences | ErrorCode::TooManyEndpoints
        )
    }

    /// Whether this code says an id or SSRC is already taken.
    pub const fn is_taken(self) -> bool {
        matches!(
            self,
            ErrorCode::ConferenceExists | ErrorCode::EndpointExists | ErrorCode::SsrcTaken
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_errors() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!((400..600).contains(&c.status()), "{c}");
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn capacity_and_taken_are_both_409_yet_told_apart() {
        let cap: Vec<_> = ErrorCode::ALL.iter().filter(|c| c.is_capacity()).collect();
        let taken: Vec<_> = ErrorCode::ALL.iter().filter(|c| c.is_taken()).collect();
        assert_eq!(cap.len(), 2);
        assert_eq!(taken.len(), 3);
        assert!(cap.iter().chain(&taken).all(|c| c.status() == 409));
        assert!(cap.iter().all(|c| !c.is_taken()));
    }
}
