//! The forwarder holds no key because it cannot: no crate `blindfold-forwarder` depends on
//! (normal dependencies, transitively) is an AEAD, HPKE, MLS, SRTP or e2ee crate. Read
//! from the resolved dependency graph (`cargo metadata`), not from the source text.

mod common;

use std::collections::BTreeSet;

use common::metadata::{metadata, normal_closure};

/// Crate names that implement or carry media encryption or group key agreement, as
/// substrings, so `aes-gcm`, `chacha20poly1305`, `hpke-rs`, `openmls` and friends match.
/// (rand's `chacha20` is a CSPRNG the forwarder uses for ICE passwords, not an AEAD.)
const KEY_CRATES: &[&str] = &[
    "e2ee", "aead", "aes-", "gcm", "poly1305", "hpke", "x25519", "mls", "srtp", "sframe",
    "ed25519", "p256", "openssl", "aws-lc",
];
/// Exact names too short to match as substrings: the AES block cipher, its CTR mode, ring.
const KEY_CRATES_EXACT: &[&str] = &["aes", "ctr", "ring"];

fn key_crates(closure: &BTreeSet<String>) -> Vec<&String> {
    closure
        .iter()
        .filter(|name| {
            KEY_CRATES.iter().any(|k| name.contains(k)) || KEY_CRATES_EXACT.contains(&name.as_str())
        })
        .collect()
}

#[test]
fn forwarder_dependency_graph_holds_no_key_crate() {
    let meta = metadata();
    let closure = normal_closure(&meta, "blindfold-forwarder");
    assert!(
        closure.contains("blindfold-proto") && closure.contains("mio"),
        "the forwarder's graph was read: {closure:?}"
    );
    let found = key_crates(&closure);
    assert!(
        found.is_empty(),
        "blindfold-forwarder depends on key crates: {found:?}"
    );
}

#[test]
fn the_same_walk_finds_the_keys_of_a_participant() {
    // The control: the participant's graph does hold the keys, and the same walk says so.
    let meta = metadata();
    let closure = normal_closure(&meta, "blindfold-client");
    let found = key_crates(&closure);
    assert!(
        found.iter().any(|n| *n == "blindfold-e2ee") && found.iter().any(|n| *n == "aes-gcm"),
        "the walk must see blindfold-e2ee and aes-gcm under the client: {found:?}"
    );
}
