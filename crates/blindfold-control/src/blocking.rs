//! The typed client for callers without an async runtime (the load tool, tests): the same
//! calls as [`crate::client::Client`], each run to completion on a private current-thread
//! runtime.
//!
//! Owns that runtime only. Must not be called from inside an async runtime (tokio refuses
//! to block there); async code uses [`crate::client::Client`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{self, ControlError};
use crate::wire::{
    ConferenceList, ConferenceSettings, ConferenceState, Created, EndpointCreated, ReceiveJson,
    SubscriptionJson, TrackJson,
};

/// A blocking client of one forwarder's control API.
#[derive(Debug)]
pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: client::Client,
}

impl Client {
    /// See [`client::Client::new`].
    pub fn new(base: &str, token: Option<&str>) -> Result<Self, ControlError> {
        Self::with_timeout(base, token, client::DEFAULT_TIMEOUT)
    }

    /// See [`client::Client::with_timeout`].
    pub fn with_timeout(
        base: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ControlError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ControlError::Unexpected(format!("starting a runtime: {e}")))?;
        // reqwest's connection pool registers with the runtime it is built in.
        let inner = {
            let _guard = rt.enter();
            client::Client::with_timeout(base, token, timeout)?
        };
        Ok(Self { rt, inner })
    }

    /// The async client this one drives.
    pub fn inner(&self) -> &client::Client {
        &self.inner
    }

    /// See [`client::Client::list_conferences`].
    pub fn list_conferences(&self) -> Result<ConferenceList, ControlError> {
        self.rt.block_on(self.inner.list_conferences())
    }

    /// See [`client::Client::create_conference`].
    pub fn create_conference(&self, id: Option<&str>) -> Result<Created, ControlError> {
        self.rt.block_on(self.inner.create_conference(id))
    }

    /// See [`client::Client::conference`].
    pub fn conference(&self, conf: &str) -> Result<ConferenceState, ControlError> {
        self.rt.block_on(self.inner.conference(conf))
    }

    /// See [`client::Client::delete_conference`].
    pub fn delete_conference(&self, conf: &str) -> Result<(), ControlError> {
        self.rt.block_on(self.inner.delete_conference(conf))
    }

    /// See [`client::Client::create_endpoint`].
    pub fn create_endpoint(
        &self,
        conf: &str,
        id: Option<&str>,
    ) -> Result<EndpointCreated, ControlError> {
        self.rt.block_on(self.inner.create_endpoint(conf, id))
    }

    /// See [`client::Client::delete_endpoint`].
    pub fn delete_endpoint(&self, conf: &str, ep: &str) -> Result<(), ControlError> {
        self.rt.block_on(self.inner.delete_endpoint(conf, ep))
    }

    /// See [`client::Client::set_address`].
    pub fn set_address(&self, conf: &str, ep: &str, addr: SocketAddr) -> Result<(), ControlError> {
        self.rt.block_on(self.inner.set_address(conf, ep, addr))
    }

    /// See [`client::Client::set_tracks`].
    pub fn set_tracks(
        &self,
        conf: &str,
        ep: &str,
        tracks: Vec<TrackJson>,
    ) -> Result<(), ControlError> {
        self.rt.block_on(self.inner.set_tracks(conf, ep, tracks))
    }

    /// See [`client::Client::set_subscriptions`].
    pub fn set_subscriptions(
        &self,
        conf: &str,
        ep: &str,
        subscriptions: Vec<SubscriptionJson>,
    ) -> Result<(), ControlError> {
        self.rt
            .block_on(self.inner.set_subscriptions(conf, ep, subscriptions))
    }

    /// See [`client::Client::create_conference_with`].
    pub fn create_conference_with(
        &self,
        id: Option<&str>,
        settings: ConferenceSettings,
    ) -> Result<Created, ControlError> {
        self.rt
            .block_on(self.inner.create_conference_with(id, settings))
    }

    /// See [`client::Client::set_conference_settings`].
    pub fn set_conference_settings(
        &self,
        conf: &str,
        settings: ConferenceSettings,
    ) -> Result<(), ControlError> {
        self.rt
            .block_on(self.inner.set_conference_settings(conf, settings))
    }

    /// See [`client::Client::set_receive`].
    pub fn set_receive(
        &self,
        conf: &str,
        ep: &str,
        receive: ReceiveJson,
    ) -> Result<(), ControlError> {
        self.rt.block_on(self.inner.set_receive(conf, ep, receive))
    }

    /// See [`client::Client::openapi`].
    pub fn openapi(&self) -> Result<serde_json::Value, ControlError> {
        self.rt.block_on(self.inner.openapi())
    }

    /// See [`client::Client::metrics`].
    pub fn metrics(&self) -> Result<String, ControlError> {
        self.rt.block_on(self.inner.metrics())
    }

    /// See [`client::Client::healthz`].
    pub fn healthz(&self) -> Result<bool, ControlError> {
        self.rt.block_on(self.inner.healthz())
    }
}
