//! The forwarders the service places calls on, each driven through the typed control
//! client of `blindfold-control`: async, bounded in concurrency, and with the idempotent
//! readings the service relies on (an existing conference is taken as its own, deleting
//! something already gone succeeds).
//!
//! Owns the calls and the per-forwarder endpoint count used for placement. Must not touch
//! keys (the forwarder never hears of them) nor the service's membership state, and must
//! never be called while a conference's state is locked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use blindfold_control::client::{Client, ControlError};
use blindfold_control::{EndpointCreated, SubscriptionJson, TrackJson};
use tokio::sync::Semaphore;

/// Most control calls in flight to one forwarder. The forwarder serves 256 connections;
/// a publish in a large call fans out to one subscription update per member, which this
/// keeps from taking all of them.
const MAX_IN_FLIGHT: usize = 32;

/// One forwarder.
#[derive(Debug)]
pub struct Forwarder {
    client: Client,
    /// Endpoints this service holds on it (for least-loaded placement).
    endpoints: AtomicUsize,
    in_flight: Semaphore,
}

impl Forwarder {
    /// A forwarder whose control API is at `base` (e.g. `http://127.0.0.1:8480`).
    pub fn new(base: &str, token: &str) -> Result<Self, ControlError> {
        Ok(Self {
            client: Client::new(base, Some(token))?,
            endpoints: AtomicUsize::new(0),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// Endpoints this service holds on this forwarder.
    pub fn load(&self) -> usize {
        self.endpoints.load(Ordering::Relaxed)
    }

    async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        // The semaphore is never closed; if it were, calling unbounded is still correct.
        let _permit = self.in_flight.acquire().await.ok();
        f.await
    }

    /// Creates conference `conf`; one that exists already is taken as is (a restarted
    /// service, or a conference another joiner's request created).
    pub async fn create_conference(&self, conf: &str) -> Result<(), ControlError> {
        match self.call(self.client.create_conference(Some(conf))).await {
            Ok(_) | Err(ControlError::Exists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes conference `conf`; a missing one is already gone.
    pub async fn delete_conference(&self, conf: &str) -> Result<(), ControlError> {
        match self.call(self.client.delete_conference(conf)).await {
            Ok(()) | Err(ControlError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates endpoint `ep` in `conf`.
    pub async fn create_endpoint(
        &self,
        conf: &str,
        ep: &str,
    ) -> Result<EndpointCreated, ControlError> {
        let created = self
            .call(self.client.create_endpoint(conf, Some(ep)))
            .await?;
        self.endpoints.fetch_add(1, Ordering::Relaxed);
        Ok(created)
    }

    /// Deletes endpoint `ep`: once this returns, it receives nothing more. A missing one
    /// is already gone.
    pub async fn delete_endpoint(&self, conf: &str, ep: &str) -> Result<(), ControlError> {
        match self.call(self.client.delete_endpoint(conf, ep)).await {
            Ok(()) | Err(ControlError::NotFound(_)) => {
                let _ = self
                    .endpoints
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Replaces the tracks `ep` publishes.
    pub async fn set_tracks(
        &self,
        conf: &str,
        ep: &str,
        tracks: Vec<TrackJson>,
    ) -> Result<(), ControlError> {
        self.call(self.client.set_tracks(conf, ep, tracks)).await
    }

    /// Sets what the forwarder chooses for `ep` (last-N, top-K audio, pins).
    pub async fn set_receive(
        &self,
        conf: &str,
        ep: &str,
        receive: blindfold_control::ReceiveJson,
    ) -> Result<(), ControlError> {
        self.call(self.client.set_receive(conf, ep, receive)).await
    }

    /// Turns the forwarder's speaker detection off for `conf` (the service's
    /// `--speaker-detection false`).
    pub async fn speaker_detection_off(&self, conf: &str) -> Result<(), ControlError> {
        let settings = blindfold_control::ConferenceSettings {
            speaker_detection: false,
            ..Default::default()
        };
        self.call(self.client.set_conference_settings(conf, settings))
            .await
    }

    /// The forwarder's speaker event stream (not counted against the call limit: it is
    /// one long request).
    pub async fn events(&self) -> Result<blindfold_control::client::Events, ControlError> {
        self.client.events().await
    }

    /// Replaces what `ep` receives.
    pub async fn set_subscriptions(
        &self,
        conf: &str,
        ep: &str,
        subs: Vec<SubscriptionJson>,
    ) -> Result<(), ControlError> {
        self.call(self.client.set_subscriptions(conf, ep, subs))
            .await
    }
}

/// The forwarders, least loaded first.
pub fn by_load(all: &[Arc<Forwarder>]) -> Vec<Arc<Forwarder>> {
    let mut v = all.to_vec();
    v.sort_by_key(|f| f.load());
    v
}
