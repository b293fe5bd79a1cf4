//! The browser edge holds hop keys (DTLS-SRTP, one per browser) and never a group key,
//! because it cannot: no crate `blindfold-edge` depends on (normal dependencies,
//! transitively) implements MLS, SFrame, HPKE or blindfold's e2ee. Read from the resolved
//! dependency graph (`cargo metadata`). AES-GCM and the DTLS handshake crates are expected
//! there: they are the hop's SRTP.

mod common;

use std::collections::BTreeSet;

use common::metadata::{metadata, normal_closure};

/// What group keys are made and used with: blindfold's e2ee crate, any MLS stack
/// (openmls, mls-rs, core-crypto's), SFrame and HPKE (MLS's Welcome encryption).
const GROUP_KEY_CRATES: &[&str] = &["e2ee", "mls", "sframe", "hpke"];

fn group_key_crates(closure: &BTreeSet<String>) -> Vec<&String> {
    closure
        .iter()
        .filter(|name| GROUP_KEY_CRATES.iter().any(|k| name.contains(k)))
        .collect()
}

#[test]
fn edge_dependency_graph_holds_no_group_key_crate() {
    let meta = metadata();
    let closure = normal_closure(&meta, "blindfold-edge");
    assert!(
        closure.contains("str0m") && closure.contains("aes-gcm"),
        "the edge's graph was read, hop SRTP included: {closure:?}"
    );
    let found = group_key_crates(&closure);
    assert!(
        found.is_empty(),
        "blindfold-edge depends on group-key crates: {found:?}"
    );
}

#[test]
fn the_same_walk_finds_the_group_keys_of_a_participant() {
    let meta = metadata();
    let closure = normal_closure(&meta, "blindfold-client");
    let found = group_key_crates(&closure);
    assert!(
        found.iter().any(|n| *n == "blindfold-e2ee") && found.iter().any(|n| *n == "openmls"),
        "the walk must see blindfold-e2ee and openmls under the client: {found:?}"
    );
}
