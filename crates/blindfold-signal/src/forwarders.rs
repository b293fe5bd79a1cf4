//! The signalling service's client of the forwarder control API (issue 2's contract):
//! create and delete conferences and endpoints, set tracks and subscriptions.
//!
//! Owns the HTTP calls and their error mapping only. It must not touch keys (the
//! forwarder never hears of them) nor the service's membership state. Calls are blocking
//! (ureq) and run on tokio's blocking pool, so a slow forwarder never stalls the
//! WebSocket tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::proto::{Candidate, Ice, Track};

/// A control API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The forwarder could not be reached or the connection broke.
    #[error("forwarder unreachable: {0}")]
    Transport(String),
    /// The forwarder answered with an unexpected status.
    #[error("forwarder answered {status}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The error body (the forwarder's own JSON error, which carries no secrets).
        body: String,
    },
    /// The answer did not have the documented shape.
    #[error("unexpected answer from the forwarder: {0}")]
    Body(String),
}

impl ControlError {
    /// The HTTP status, when the forwarder answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ControlError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What creating an endpoint returns.
#[derive(Debug, Clone, Deserialize)]
pub struct NewEndpoint {
    /// ICE credentials.
    pub ice: Ice,
    /// Media addresses.
    pub candidates: Vec<Candidate>,
}

/// One forwarder the service may place conferences on.
pub struct ForwarderClient {
    base: String,
    auth: String,
    agent: ureq::Agent,
    /// Endpoints this service currently holds on it (for least-loaded placement).
    endpoints: AtomicUsize,
}

impl std::fmt::Debug for ForwarderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output.
        f.debug_struct("ForwarderClient")
            .field("base", &self.base)
            .field("endpoints", &self.endpoints.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ForwarderClient {
    /// A client for the control API at `base` (e.g. `http://127.0.0.1:8480`).
    pub fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            auth: format!("Bearer {token}"),
            agent,
            endpoints: AtomicUsize::new(0),
        }
    }

    /// Endpoints this service holds on this forwarder.
    pub fn load(&self) -> usize {
        self.endpoints.load(Ordering::Relaxed)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, String), ControlError> {
        let url = format!("{}{}", self.base, path);
        let text = body.map(|b| b.to_string());
        let resp = match (method, text) {
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &self.auth)
                .call(),
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &self.auth)
                .call(),
            ("POST", Some(t)) => self
                .agent
                .post(&url)
                .header("Authorization", &self.auth)
                .content_type("application/json")
                .send(t),
            ("PUT", Some(t)) => self
                .agent
                .put(&url)
                .header("Authorization", &self.auth)
                .content_type("application/json")
                .send(t),
            _ => return Err(ControlError::Body(format!("no body for {method}"))),
        };
        let mut resp = resp.map_err(|e| ControlError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, text))
    }

    fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        ok: &[u16],
    ) -> Result<String, ControlError> {
        let (status, text) = self.call(method, path, body)?;
        if ok.contains(&status) {
            Ok(text)
        } else {
            Err(ControlError::Status { status, body: text })
        }
    }

    /// Creates conference `conf`; an existing one (409) is taken as is.
    pub fn create_conference(&self, conf: &str) -> Result<(), ControlError> {
        self.expect(
            "POST",
            "/v1/conferences",
            Some(json!({ "id": conf })),
            &[200, 201, 409],
        )
        .map(|_| ())
    }

    /// Deletes conference `conf`; a missing one (404) is already gone.
    pub fn delete_conference(&self, conf: &str) -> Result<(), ControlError> {
        self.expect(
            "DELETE",
            &format!("/v1/conferences/{conf}"),
            None,
            &[200, 204, 404],
        )
        .map(|_| ())
    }

    /// Creates endpoint `ep` in `conf`.
    pub fn create_endpoint(&self, conf: &str, ep: &str) -> Result<NewEndpoint, ControlError> {
        let text = self.expect(
            "POST",
            &format!("/v1/conferences/{conf}/endpoints"),
            Some(json!({ "id": ep })),
            &[200, 201],
        )?;
        let created: NewEndpoint =
            serde_json::from_str(&text).map_err(|e| ControlError::Body(e.to_string()))?;
        self.endpoints.fetch_add(1, Ordering::Relaxed);
        Ok(created)
    }

    /// Deletes endpoint `ep`: from the forwarder's answer on it receives nothing more.
    pub fn delete_endpoint(&self, conf: &str, ep: &str) -> Result<(), ControlError> {
        let result = self
            .expect(
                "DELETE",
                &format!("/v1/conferences/{conf}/endpoints/{ep}"),
                None,
                &[200, 204, 404],
            )
            .map(|_| ());
        if result.is_ok() {
            let _ = self
                .endpoints
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        result
    }

    /// Replaces the tracks `ep` publishes.
    pub fn set_tracks(&self, conf: &str, ep: &str, tracks: &[Track]) -> Result<(), ControlError> {
        self.expect(
            "PUT",
            &format!("/v1/conferences/{conf}/endpoints/{ep}/tracks"),
            Some(json!({ "tracks": tracks })),
            &[200, 204],
        )
        .map(|_| ())
    }

    /// Replaces what `ep` receives: (publishing endpoint, track) pairs.
    pub fn set_subscriptions(
        &self,
        conf: &str,
        ep: &str,
        subs: &[(String, String)],
    ) -> Result<(), ControlError> {
        let subs: Vec<Value> = subs
            .iter()
            .map(|(e, t)| json!({ "endpoint": e, "track": t }))
            .collect();
        self.expect(
            "PUT",
            &format!("/v1/conferences/{conf}/endpoints/{ep}/subscriptions"),
            Some(json!({ "subscriptions": subs })),
            &[200, 204],
        )
        .map(|_| ())
    }
}

/// Runs a blocking control call on tokio's blocking pool.
pub async fn blocking<T, F>(client: &Arc<ForwarderClient>, f: F) -> Result<T, ControlError>
where
    T: Send + 'static,
    F: FnOnce(&ForwarderClient) -> Result<T, ControlError> + Send + 'static,
{
    let client = client.clone();
    tokio::task::spawn_blocking(move || f(&client))
        .await
        .map_err(|e| ControlError::Transport(format!("control task failed: {e}")))?
}
