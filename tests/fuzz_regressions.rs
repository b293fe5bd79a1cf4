//! Replays every input the fuzzers ever found (fuzz/regressions/<target>/*) through the
//! library's fuzz entry points, and runs the same entry points over random and
//! structured inputs with proptest, so hostile-input coverage runs on stable in CI.

use blindfold::forwarder::control;
use blindfold::proto::{packet, route, stun as ice};
use proptest::prelude::*;
use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep") {
                f(&std::fs::read(&p).unwrap());
                n += 1;
            }
        }
    }
    n
}

#[test]
fn regression_corpora_replay_without_panic() {
    let total = replay("classify", packet::fuzz_classify)
        + replay("stun", ice::fuzz_stun)
        + replay("route", route::fuzz_route)
        + replay("control_json", control::fuzz_json);
    assert!(total >= 4, "the seed corpora are present ({total} inputs)");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_datagrams_never_panic_or_misroute(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
        packet::fuzz_classify(&data);
        ice::fuzz_stun(&data);
        route::fuzz_route(&data);
        control::fuzz_json(&data);
    }

    #[test]
    fn json_bodies_never_panic_the_model(
        id in "[a-zA-Z0-9_-]{0,70}",
        ssrcs in proptest::collection::vec(any::<u32>(), 0..12),
        n in 0usize..40,
    ) {
        let tracks: Vec<_> = (0..n).map(|i| serde_json::json!({"id": format!("{id}{i}"), "kind": "video", "ssrcs": ssrcs})).collect();
        control::fuzz_json(serde_json::json!({"tracks": tracks}).to_string().as_bytes());
        let subs: Vec<_> = (0..n).map(|i| serde_json::json!({"endpoint": if i % 2 == 0 { "a" } else { &id }, "track": format!("{id}{i}")})).collect();
        control::fuzz_json(serde_json::json!({"subscriptions": subs}).to_string().as_bytes());
        control::fuzz_json(serde_json::json!({"id": id}).to_string().as_bytes());
    }

    #[test]
    fn rtp_like_datagrams_never_misroute(
        src in 0u8..5,
        b0 in 0x80u8..0xc0,
        b1 in any::<u8>(),
        ssrc in 0u32..6,
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut d = vec![src, b0, b1, 0, 1, 0, 0, 0, 1];
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(&rest);
        route::fuzz_route(&d);
    }
}
