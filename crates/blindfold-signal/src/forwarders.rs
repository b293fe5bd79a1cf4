//! The forwarders the service places calls on, each driven through the typed control
//! client of `blindfold-control`: async, bounded in concurrency, and with the idempotent
//! readings the service relies on (an existing conference is taken as its own, deleting
//! something already gone succeeds).
//!
//! Owns the calls, the per-forwarder endpoint count used for placement, and each
//! forwarder's health: [`Health`] decides, from consecutive failed checks, when a forwarder
//! is lost (its calls then move, see [`crate::service`]). Must not touch
//! keys (the forwarder never hears of them) nor the service's membership state, and must
//! never be called while a conference's state is locked.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
    health: Mutex<Health>,
    /// Mirrors `health` for placement, which must not wait on a lock.
    lost: AtomicBool,
    /// Conferences moved off it while it was lost: deleted if it answers again (it may
    /// only have been stalled, and must not keep endpoints this service has forgotten).
    orphans: Mutex<Vec<String>>,
}

/// What one more health check changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The forwarder just failed its `lost_after`-th check in a row: it is lost.
    Lost,
    /// A lost forwarder answered again: it may take new calls (moved ones stay moved).
    Back,
}

/// The lost-forwarder decision, sans IO: a forwarder is lost once `lost_after` checks in
/// a row failed (one slow answer on a loaded machine is not a death), and live again at
/// its first good answer.
#[derive(Debug, Clone)]
pub struct Health {
    lost_after: u32,
    failures: u32,
    lost: bool,
}

impl Health {
    /// Lost after `lost_after` failures in a row (at least one).
    pub fn new(lost_after: u32) -> Self {
        Self {
            lost_after: lost_after.max(1),
            failures: 0,
            lost: false,
        }
    }

    /// Records one check's outcome; says when the verdict changed.
    pub fn observe(&mut self, ok: bool) -> Option<Change> {
        if ok {
            self.failures = 0;
            return std::mem::take(&mut self.lost).then_some(Change::Back);
        }
        self.failures = self.failures.saturating_add(1);
        if !self.lost && self.failures >= self.lost_after {
            self.lost = true;
            return Some(Change::Lost);
        }
        None
    }

    /// Whether the forwarder is lost.
    pub fn is_lost(&self) -> bool {
        self.lost
    }
}

impl Forwarder {
    /// A forwarder whose control API is at `base` (e.g. `http://127.0.0.1:8480`).
    pub fn new(base: &str, token: &str) -> Result<Self, ControlError> {
        Ok(Self {
            client: Client::new(base, Some(token))?,
            endpoints: AtomicUsize::new(0),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            health: Mutex::new(Health::new(1)),
            lost: AtomicBool::new(false),
            orphans: Mutex::new(Vec::new()),
        })
    }

    /// Declares the forwarder lost after `lost_after` failed checks in a row.
    pub fn set_lost_after(&self, lost_after: u32) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = Health::new(lost_after);
    }

    /// True once the forwarder failed enough checks in a row and has not answered since.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Checks `GET /healthz` within `timeout` (a draining forwarder is alive) and returns
    /// what changed.
    pub async fn check(&self, timeout: Duration) -> Option<Change> {
        let ok = matches!(
            tokio::time::timeout(timeout, self.client.healthz()).await,
            Ok(Ok(_))
        );
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let change = h.observe(ok);
        self.lost.store(h.is_lost(), Ordering::Relaxed);
        change
    }

    /// Notes that `conf` moved off this forwarder while it was lost.
    pub fn orphan(&self, conf: &str) {
        self.orphans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conf.to_string());
    }

    /// Deletes every conference that moved off it (once it answers again).
    pub async fn delete_orphans(&self) {
        let orphans =
            std::mem::take(&mut *self.orphans.lock().unwrap_or_else(PoisonError::into_inner));
        for conf in orphans {
            if let Err(e) = self.delete_conference(&conf).await {
                tracing::warn!(error = %e, "deleting a moved call's old conference failed");
            }
        }
    }

    /// Forgets `n` endpoints this service held on it (they went with a lost forwarder).
    pub fn forget(&self, n: usize) {
        let _ = self
            .endpoints
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| {
                Some(e.saturating_sub(n))
            });
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

/// The forwarders not lost, least loaded first.
pub fn by_load(all: &[Arc<Forwarder>]) -> Vec<Arc<Forwarder>> {
    let mut v: Vec<_> = all.iter().filter(|f| !f.is_lost()).cloned().collect();
    v.sort_by_key(|f| f.load());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_only_after_k_failures_in_a_row() {
        let mut h = Health::new(3);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        // A good answer in between starts the count again.
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(false), None);
        assert!(!h.is_lost());
        assert_eq!(h.observe(false), Some(Change::Lost));
        assert!(h.is_lost());
        // Lost once: later failures do not move its calls again.
        assert_eq!(h.observe(false), None);
        assert_eq!(h.observe(true), Some(Change::Back));
        assert!(!h.is_lost());
        assert_eq!(h.observe(true), None);
    }

    #[test]
    fn at_least_one_failure_is_needed() {
        let mut h = Health::new(0);
        assert_eq!(h.observe(true), None);
        assert_eq!(h.observe(false), Some(Change::Lost));
    }
}
