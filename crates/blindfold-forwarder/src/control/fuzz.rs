//! The fuzz entry point over the control API's JSON bodies (feature `fuzzing`).
//!
//! Owns nothing but the entry point; must parse with exactly the server's types and apply
//! what parses exactly as the handlers do.

use std::net::SocketAddr;

use blindfold_control::{
    AddressBody, CreateConference, CreateEndpoint, SubscriptionsBody, TracksBody,
};
use blindfold_proto::model::Model;

use super::handlers::{subscription_in, track_in};

/// Parses `data` as each body type and, when it parses, applies it to a model holding one
/// conference with two endpoints, as the handlers do. Must never panic.
pub fn fuzz_json(data: &[u8]) {
    let config = crate::config::ServeArgs::default();
    let mut model = Model::new(
        config.limits(),
        blindfold_proto::table::IngressLimits::UNLIMITED,
    );
    let _ = model.create_conference(Some("c".into()));
    let _ = model.create_endpoint("c", Some("a".into()));
    let _ = model.create_endpoint("c", Some("b".into()));
    if let Ok(b) = serde_json::from_slice::<CreateConference>(data) {
        let _ = model.create_conference(b.id);
    }
    if let Ok(b) = serde_json::from_slice::<CreateEndpoint>(data) {
        let _ = model.create_endpoint("c", b.id);
    }
    if let Ok(b) = serde_json::from_slice::<AddressBody>(data) {
        let _ = model.set_address("c", "a", SocketAddr::new(b.ip, b.port));
    }
    if let Ok(b) = serde_json::from_slice::<TracksBody>(data) {
        let tracks = b.tracks.into_iter().map(track_in).collect();
        let _ = model.set_tracks("c", "a", tracks);
    }
    if let Ok(b) = serde_json::from_slice::<SubscriptionsBody>(data) {
        let subs = b.subscriptions.into_iter().map(subscription_in).collect();
        let _ = model.set_subscriptions("c", "b", subs);
    }
    let _ = model.conference("c", std::time::Instant::now());
}
