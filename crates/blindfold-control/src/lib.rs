//! blindfold-control: the forwarder's control API on the wire.
//!
//! Owns the request and response bodies (serde types with OpenAPI schemas) shared by the
//! server in `blindfold-forwarder` and the typed client used by the signalling service,
//! the load generator and the tests. Must not touch the routing state or any key.
