//! The forwarder holds no key because it cannot: no crate `blindfold-forwarder` depends on
//! (normal dependencies, transitively) is an AEAD, HPKE, MLS, SRTP or e2ee crate. Read
//! from the resolved dependency graph (`cargo metadata`), not from the source text.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crate names that implement or carry media encryption or group key agreement, as
/// substrings, so `aes-gcm`, `chacha20poly1305`, `hpke-rs`, `openmls` and friends match.
/// (rand's `chacha20` is a CSPRNG the forwarder uses for ICE passwords, not an AEAD.)
const KEY_CRATES: &[&str] = &[
    "e2ee", "aead", "aes-", "gcm", "poly1305", "hpke", "x25519", "mls", "srtp", "sframe",
    "ed25519", "p256", "openssl", "aws-lc",
];
/// Exact names too short to match as substrings: the AES block cipher, its CTR mode, ring.
const KEY_CRATES_EXACT: &[&str] = &["aes", "ctr", "ring"];

/// The normal (non-dev, non-build) dependency closure of `root`, as package names.
fn normal_closure(meta: &Value, root: &str) -> BTreeSet<String> {
    let packages = meta["packages"].as_array().expect("packages");
    let name_of: HashMap<&str, &str> = packages
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes = meta["resolve"]["nodes"].as_array().expect("resolve graph");
    let by_id: HashMap<&str, &Value> = nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root_id = packages
        .iter()
        .find(|p| p["name"] == root)
        .and_then(|p| p["id"].as_str())
        .unwrap_or_else(|| panic!("{root} is a workspace member"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![root_id];
    while let Some(id) = todo.pop() {
        for dep in by_id[id]["deps"].as_array().unwrap() {
            // A kind of null is a normal dependency; "dev" and "build" are not linked in.
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let pkg = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(name_of[pkg].to_string()) {
                todo.push(pkg);
            }
        }
    }
    seen
}

/// The host's target triple: the graph is resolved for the platform the forwarder runs on
/// (and cargo need not fetch other platforms' crates).
fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

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
