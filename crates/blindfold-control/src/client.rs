//! The typed async client of the control API: one method per operation, the wire types in
//! and out, and errors that say what happened ([`ControlError`]): an id already taken, the
//! forwarder out of capacity, something missing, draining, refused, or unreachable.
//!
//! Owns the HTTP requests (reqwest, plain HTTP, no proxy: the API lives on a private
//! network) and the mapping of answers to errors. Must not retry, cache or decide
//! anything (callers do: the signalling service treats an existing conference as its
//! own), and must not put the token anywhere but the `Authorization` header.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorBody, ErrorCode};
use crate::wire::{
    AddressBody, ConferenceList, ConferenceSettings, ConferenceState, CreateConference,
    CreateEndpoint, Created, EndpointCreated, ReceiveJson, SpeakerEvent, SubscriptionJson,
    SubscriptionsBody, TrackJson, TracksBody,
};

/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept. The server closes a connection that sends
/// no request headers for 5 s (its slow-loris bound), so a client that reused one idle for
/// longer would race that close and see a broken connection instead of an answer.
const POOL_IDLE: Duration = Duration::from_secs(2);
/// Largest answer read (a full conference with 255 endpoints and their subscriptions is
/// a few MiB).
const MAX_ANSWER: usize = 16 << 20;

/// What the forwarder answered when it refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The stable `error.code`, when the body carried one this client knows.
    pub code: Option<ErrorCode>,
    /// `error.message` (or the start of a non-JSON body): the forwarder's own words,
    /// which carry no secret.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "{} {c}: {}", self.status, self.message),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

/// A control API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// An id or SSRC is already taken (409 `conference_exists`, `endpoint_exists`,
    /// `ssrc_taken`).
    #[error("already taken ({0})")]
    Exists(Refusal),
    /// A count limit of the forwarder is reached (409 `too_many_conferences`,
    /// `too_many_endpoints`): retry elsewhere or after deletions.
    #[error("forwarder at capacity ({0})")]
    Capacity(Refusal),
    /// The conference or endpoint does not exist (404).
    #[error("not found ({0})")]
    NotFound(Refusal),
    /// The forwarder is draining or otherwise unavailable (503).
    #[error("forwarder unavailable ({0})")]
    Unavailable(Refusal),
    /// Any other refusal (400, 401, 413, 415, 422, ...).
    #[error("forwarder refused the request ({0})")]
    Refused(Refusal),
    /// The forwarder could not be reached, timed out, or the connection broke.
    #[error("forwarder unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer did not have the documented shape.
    #[error("unexpected answer from the forwarder: {0}")]
    Unexpected(String),
    /// An id the API would refuse; nothing was sent.
    #[error("invalid {0} id")]
    InvalidId(&'static str),
}

impl ControlError {
    /// The forwarder's refusal, when it answered with an error.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ControlError::Exists(r)
            | ControlError::Capacity(r)
            | ControlError::NotFound(r)
            | ControlError::Unavailable(r)
            | ControlError::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// The HTTP status, when the forwarder answered with an error.
    pub fn status(&self) -> Option<u16> {
        self.refusal().map(|r| r.status)
    }

    /// The stable error code, when the forwarder answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.refusal().and_then(|r| r.code)
    }

    /// Classifies a refusal by its code, or by its status when it carries none.
    fn from_refusal(r: Refusal) -> Self {
        match (r.code, r.status) {
            (Some(c), _) if c.is_taken() => ControlError::Exists(r),
            (Some(c), _) if c.is_capacity() => ControlError::Capacity(r),
            (Some(ErrorCode::ConferenceNotFound | ErrorCode::EndpointNotFound) | None, 404) => {
                ControlError::NotFound(r)
            }
            (_, 503) => ControlError::Unavailable(r),
            _ => ControlError::Refused(r),
        }
    }
}

/// Longest silence on the event stream before it counts as broken: the server sends a
/// keep-alive comment every 15 s.
pub const EVENTS_IDLE: Duration = Duration::from_secs(45);
/// Largest event the stream reader buffers.
const MAX_EVENT: usize = 1 << 20;

/// A client of one forwarder's control API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For the event stream, which lives as long as the caller listens: no whole-request
    /// timeout (the stream has its own idle bound, [`EVENTS_IDLE`]).
    stream: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8480`), sending `token` as
    /// the bearer token when given, with [`DEFAULT_TIMEOUT`] per request.
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ControlError> {
        Self::with_timeout(base, token, DEFAULT_TIMEOUT)
    }

    /// Like [`Client::new`] with another whole-request timeout.
    pub fn with_timeout(
        base: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .no_proxy()
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .map_err(ControlError::Transport)?;
        let stream = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .no_proxy()
            .build()
            .map_err(ControlError::Transport)?;
        Ok(Self {
            http,
            stream,
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/conferences`.
    pub async fn list_conferences(&self) -> Result<ConferenceList, ControlError> {
        self.json(Method::GET, "/v1/conferences", None::<&()>).await
    }

    /// `POST /v1/conferences`: `id`, or a random one when `None`.
    pub async fn create_conference(&self, id: Option<&str>) -> Result<Created, ControlError> {
        if let Some(id) = id {
            check(id, "conference")?;
        }
        let body = CreateConference {
            id: id.map(str::to_string),
            settings: None,
        };
        self.json(Method::POST, "/v1/conferences", Some(&body))
            .await
    }

    /// `POST /v1/conferences` with settings from the start.
    pub async fn create_conference_with(
        &self,
        id: Option<&str>,
        settings: ConferenceSettings,
    ) -> Result<Created, ControlError> {
        if let Some(id) = id {
            check(id, "conference")?;
        }
        let body = CreateConference {
            id: id.map(str::to_string),
            settings: Some(settings),
        };
        self.json(Method::POST, "/v1/conferences", Some(&body))
            .await
    }

    /// `PUT /v1/conferences/{conf}/settings`.
    pub async fn set_conference_settings(
        &self,
        conf: &str,
        settings: ConferenceSettings,
    ) -> Result<(), ControlError> {
        check(conf, "conference")?;
        let path = format!("/v1/conferences/{conf}/settings");
        self.send(Method::PUT, &path, Some(&settings))
            .await
            .map(drop)
    }

    /// `PUT .../receive`: what the endpoint asks the forwarder to choose for it.
    pub async fn set_receive(
        &self,
        conf: &str,
        ep: &str,
        receive: ReceiveJson,
    ) -> Result<(), ControlError> {
        let path = endpoint_path(conf, ep, "/receive")?;
        self.send(Method::PUT, &path, Some(&receive))
            .await
            .map(drop)
    }

    /// `GET /v1/events`: the speaker events of every conference, current state first.
    pub async fn events(&self) -> Result<Events, ControlError> {
        let mut req = self
            .stream
            .get(format!("{}/v1/events", self.base))
            .header("accept", "text/event-stream");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(ControlError::Transport)?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (ErrorCode::parse(&b.error.code), b.error.message),
                Err(_) => (None, String::from_utf8_lossy(&bytes).into_owned()),
            };
            return Err(ControlError::from_refusal(Refusal {
                status,
                code,
                message,
            }));
        }
        Ok(Events {
            resp,
            buf: Vec::new(),
        })
    }

    /// `GET /v1/conferences/{conf}`.
    pub async fn conference(&self, conf: &str) -> Result<ConferenceState, ControlError> {
        check(conf, "conference")?;
        let path = format!("/v1/conferences/{conf}");
        self.json(Method::GET, &path, None::<&()>).await
    }

    /// `DELETE /v1/conferences/{conf}`.
    pub async fn delete_conference(&self, conf: &str) -> Result<(), ControlError> {
        check(conf, "conference")?;
        let path = format!("/v1/conferences/{conf}");
        self.send(Method::DELETE, &path, None::<&()>)
            .await
            .map(drop)
    }

    /// `POST /v1/conferences/{conf}/endpoints`: `id`, or a random one when `None`.
    pub async fn create_endpoint(
        &self,
        conf: &str,
        id: Option<&str>,
    ) -> Result<EndpointCreated, ControlError> {
        check(conf, "conference")?;
        if let Some(id) = id {
            check(id, "endpoint")?;
        }
        let path = format!("/v1/conferences/{conf}/endpoints");
        let body = CreateEndpoint {
            id: id.map(str::to_string),
        };
        self.json(Method::POST, &path, Some(&body)).await
    }

    /// `DELETE /v1/conferences/{conf}/endpoints/{ep}`: once this returns `Ok` the
    /// endpoint receives nothing more.
    pub async fn delete_endpoint(&self, conf: &str, ep: &str) -> Result<(), ControlError> {
        let path = endpoint_path(conf, ep, "")?;
        self.send(Method::DELETE, &path, None::<&()>)
            .await
            .map(drop)
    }

    /// `PUT .../address`: a plain-RTP peer receives at `addr`.
    pub async fn set_address(
        &self,
        conf: &str,
        ep: &str,
        addr: SocketAddr,
    ) -> Result<(), ControlError> {
        let path = endpoint_path(conf, ep, "/address")?;
        let body = AddressBody::from(addr);
        self.send(Method::PUT, &path, Some(&body)).await.map(drop)
    }

    /// `PUT .../tracks`: replaces the endpoint's tracks.
    pub async fn set_tracks(
        &self,
        conf: &str,
        ep: &str,
        tracks: Vec<TrackJson>,
    ) -> Result<(), ControlError> {
        let path = endpoint_path(conf, ep, "/tracks")?;
        let body = TracksBody { tracks };
        self.send(Method::PUT, &path, Some(&body)).await.map(drop)
    }

    /// `PUT .../subscriptions`: replaces what the endpoint receives.
    pub async fn set_subscriptions(
        &self,
        conf: &str,
        ep: &str,
        subscriptions: Vec<SubscriptionJson>,
    ) -> Result<(), ControlError> {
        let path = endpoint_path(conf, ep, "/subscriptions")?;
        let body = SubscriptionsBody { subscriptions };
        self.send(Method::PUT, &path, Some(&body)).await.map(drop)
    }

    /// `GET /v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ControlError> {
        self.json(Method::GET, "/v1/openapi.json", None::<&()>)
            .await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ControlError> {
        let bytes = self.send(Method::GET, "/metrics", None::<&()>).await?;
        String::from_utf8(bytes).map_err(|e| ControlError::Unexpected(e.to_string()))
    }

    /// `GET /healthz`: `Ok(true)` while serving, `Ok(false)` while draining.
    pub async fn healthz(&self) -> Result<bool, ControlError> {
        match self.send(Method::GET, "/healthz", None::<&()>).await {
            Ok(_) => Ok(true),
            Err(ControlError::Unavailable(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ControlError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ControlError::Unexpected(e.to_string()))
    }

    /// Sends one request; returns the body of a 2xx answer, or the classified refusal.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Vec<u8>, ControlError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let mut resp = req.send().await.map_err(ControlError::Transport)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(ControlError::Transport)? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(ControlError::Unexpected(format!(
                    "answer larger than {MAX_ANSWER} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(bytes);
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (ErrorCode::parse(&b.error.code), b.error.message),
            Err(_) => (
                None,
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            ),
        };
        Err(ControlError::from_refusal(Refusal {
            status: status.as_u16(),
            code,
            message,
        }))
    }
}

/// The forwarder's event stream (`GET /v1/events`, Server-Sent Events).
#[derive(Debug)]
pub struct Events {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Events {
    /// The next speaker event. `Ok(None)`: the forwarder closed the stream. An error when
    /// the connection broke or stayed silent (not even a keep-alive) for [`EVENTS_IDLE`].
    pub async fn next(&mut self) -> Result<Option<SpeakerEvent>, ControlError> {
        loop {
            if let Some(ev) = take_event(&mut self.buf)? {
                return Ok(Some(ev));
            }
            let chunk = tokio::time::timeout(EVENTS_IDLE, self.resp.chunk())
                .await
                .map_err(|_| ControlError::Unexpected("the event stream went silent".into()))?
                .map_err(ControlError::Transport)?;
            let Some(chunk) = chunk else {
                return Ok(None);
            };
            if self.buf.len() + chunk.len() > MAX_EVENT {
                return Err(ControlError::Unexpected("event larger than 1 MiB".into()));
            }
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// Takes the first complete speaker event out of `buf` (SSE framing: lines, events ended
/// by a blank line, `:` comments, `event:` and `data:` fields), skipping other events.
fn take_event(buf: &mut Vec<u8>) -> Result<Option<SpeakerEvent>, ControlError> {
    loop {
        let text = String::from_utf8_lossy(buf);
        let Some(end) = text.find("\n\n") else {
            return Ok(None);
        };
        let block = text[..end].to_string();
        drop(text);
        buf.drain(..end + 2);
        let mut name = "message";
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if name == "speaker" && !data.is_empty() {
            return serde_json::from_str(&data)
                .map(Some)
                .map_err(|e| ControlError::Unexpected(e.to_string()));
        }
    }
}

fn check(id: &str, what: &'static str) -> Result<(), ControlError> {
    if crate::valid_id(id) {
        Ok(())
    } else {
        Err(ControlError::InvalidId(what))
    }
}

fn endpoint_path(conf: &str, ep: &str, rest: &str) -> Result<String, ControlError> {
    check(conf, "conference")?;
    check(ep, "endpoint")?;
    Ok(format!("/v1/conferences/{conf}/endpoints/{ep}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: Option<ErrorCode>) -> ControlError {
        ControlError::from_refusal(Refusal {
            status,
            code,
            message: String::new(),
        })
    }

    #[test]
    fn refusals_are_classified_by_code_first() {
        use ErrorCode as C;
        assert!(matches!(
            refusal(409, Some(C::ConferenceExists)),
            ControlError::Exists(_)
        ));
        assert!(matches!(
            refusal(409, Some(C::TooManyConferences)),
            ControlError::Capacity(_)
        ));
        assert!(matches!(
            refusal(409, Some(C::TooManyEndpoints)),
            ControlError::Capacity(_)
        ));
        assert!(matches!(
            refusal(404, Some(C::EndpointNotFound)),
            ControlError::NotFound(_)
        ));
        // an unknown route is a bug, not a missing conference
        assert!(matches!(
            refusal(404, Some(C::NoSuchRoute)),
            ControlError::Refused(_)
        ));
        assert!(matches!(
            refusal(503, Some(C::Draining)),
            ControlError::Unavailable(_)
        ));
        assert!(matches!(refusal(404, None), ControlError::NotFound(_)));
        assert!(matches!(refusal(409, None), ControlError::Refused(_)));
        assert!(matches!(
            refusal(422, Some(C::InvalidValue)),
            ControlError::Refused(_)
        ));
    }

    #[test]
    fn server_sent_events_are_framed_by_blank_lines() {
        let mut buf = b": keep-alive\n\nevent: speaker\ndata: {\"conference\":\"c\",\"dominant\":\"a\",\"recent\":[\"a\",\"b\"]}\n\nevent: spea".to_vec();
        let ev = take_event(&mut buf).unwrap().unwrap();
        assert_eq!(ev.dominant, "a");
        assert_eq!(ev.recent, ["a", "b"]);
        assert_eq!(take_event(&mut buf).unwrap(), None, "incomplete");
        assert_eq!(buf, b"event: spea");
        let mut bad = b"event: speaker\ndata: {nope}\n\n".to_vec();
        assert!(take_event(&mut bad).is_err());
    }

    #[test]
    fn ids_that_would_change_the_path_are_refused_before_sending() {
        assert!(endpoint_path("c", "e", "/tracks").is_ok());
        for bad in ["", "a/b", "..", "a?b", "a b", "é"] {
            assert!(endpoint_path(bad, "e", "").is_err(), "{bad:?}");
            assert!(endpoint_path("c", bad, "").is_err(), "{bad:?}");
        }
    }
}
