//! Per-endpoint ingress limits with simulated time: a flooding endpoint gets its burst,
//! then its sustained rate, the excess counted `rate_limited`; another publisher in the
//! same conference loses nothing.

mod common;
use blindfold_proto::counters::DropReason;
use blindfold_proto::route::Outcome;
use blindfold_proto::sim::SimConfig;
use blindfold_proto::table::IngressLimits;
use common::*;
use std::time::Duration;

#[test]
fn a_flooder_gets_its_burst_then_its_rate_and_the_others_lose_nothing() {
    for shards in [1, 3] {
        let mut call = Call::new(SimConfig {
            shards,
            ingress: IngressLimits {
                packets_per_sec: 200,
                bytes_per_sec: 0,
                burst_ms: 500,
            },
            ..SimConfig::default()
        });
        let forwarded = |call: &mut Call, name: &str, ssrc: u32, n: u16| {
            (0..n)
                .filter(|&seq| {
                    matches!(
                        call.send(name, &rtp(ssrc, seq, 200)).outcome,
                        Outcome::Forwarded(_)
                    )
                })
                .count()
        };
        // A 100-packet burst (200/s for 500 ms), then nothing until time passes.
        assert_eq!(forwarded(&mut call, "a", 0xA1, 3000), 100);
        assert_eq!(call.sim.dropped(DropReason::RateLimited), 2900);
        // d, in the same conference, is untouched.
        assert_eq!(forwarded(&mut call, "d", 0xD1, 50), 50);
        // 100 ms refills 20 packets.
        call.sim.advance(Duration::from_millis(100));
        assert_eq!(forwarded(&mut call, "a", 0xA1, 100), 20);
    }
}

#[test]
fn a_byte_limit_bounds_bytes_not_packets() {
    let mut call = Call::new(SimConfig {
        ingress: IngressLimits {
            packets_per_sec: 0,
            bytes_per_sec: 100_000,
            burst_ms: 100,
        },
        ..SimConfig::default()
    });
    // 10,000 bytes of burst: 1,000-byte datagrams pass 9 times (12-byte header each).
    let passed = (0..50)
        .filter(|&seq| {
            matches!(
                call.send("a", &rtp(0xA1, seq, 1000)).outcome,
                Outcome::Forwarded(_)
            )
        })
        .count();
    assert_eq!(passed, 9);
}
