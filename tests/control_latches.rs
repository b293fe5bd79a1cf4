//! Control API latches: declared addresses and STUN latches reported by shards reach
//! every shard and show in `GET` and `/metrics`, without any address.

mod common;

use blindfold::forwarder::ShardEvent;
use blindfold::proto::table::Latch;
use blindfold::proto::table::Update;
use serde_json::Value;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::Instant;

use common::control::*;

#[test]
fn declared_and_stun_latches_reach_shards_and_show_in_get() {
    let h = start(config());
    h.conference("c");
    let (a, gen_a) = h.endpoint("c", "a");
    let (b, gen_b) = h.endpoint("c", "b");

    let r = h.call(
        "PUT",
        "/v1/conferences/c/endpoints/b/address",
        Some(json!({"ip": "127.0.0.1", "port": 40000})),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let ups = h.drain();
    assert!(
        matches!(
            ups.as_slice(),
            [Update::Address { ep, generation, addr: Some((addr, Latch::Declared)) }]
                if *ep == b && *generation == gen_b && *addr == "127.0.0.1:40000".parse().unwrap()
        ),
        "{ups:?}"
    );

    // a shard reports a verified STUN check for a
    let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let consent_until = Instant::now() + Duration::from_secs(30);
    h.events
        .send(ShardEvent::Latched {
            ep: a,
            generation: gen_a,
            addr,
            consent_until,
        })
        .unwrap();
    let u = h.updates.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(
            u,
            Update::Address { ep, generation, addr: Some((got, Latch::Stun { consent_until: c })) }
                if ep == a && generation == gen_a && got == addr && c == consent_until
        ),
        "{u:?}"
    );
    // a stale generation is ignored
    h.events
        .send(ShardEvent::Latched {
            ep: a,
            generation: gen_a.wrapping_sub(1),
            addr: "127.0.0.1:50001".parse().unwrap(),
            consent_until,
        })
        .unwrap();
    assert!(h.updates.recv_timeout(Duration::from_millis(300)).is_err());

    let r = h.get("/v1/conferences/c");
    assert!(
        !r.text.contains("127.0.0.1"),
        "addresses never leave: {}",
        r.text
    );
    let v = r.json();
    let ep_a = &v["endpoints"][0];
    assert_eq!(ep_a["latched"], true);
    let ms = ep_a["consent_expires_in_ms"].as_u64().unwrap();
    assert!(ms > 20_000 && ms <= 30_000, "{ms}");
    assert_eq!(v["endpoints"][1]["latched"], true);
    assert_eq!(v["endpoints"][1]["consent_expires_in_ms"], Value::Null);

    let m = h.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.content_type.starts_with("text/plain"));
    assert!(m.text.contains("\nblindfold_conferences 1\n"), "{}", m.text);
    assert!(m.text.contains("\nblindfold_endpoints 2\n"));
    assert!(m.text.contains("\nblindfold_latched_endpoints 2\n"));
    assert!(m.text.contains("blindfold_rx_packets_total{shard=\"0\"} 0"));
    assert!(!m.text.contains("127.0.0.1"));
}
