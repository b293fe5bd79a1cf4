//! The forwarder's per-packet userspace work, without the kernel: classify a datagram,
//! look up its sender and SSRC, charge the ingress bucket, and build the transmit list
//! for its fan-out. Reported per forwarded copy (`Throughput::Elements`), for fan-out
//! 1, 4 and 16, over a receive batch of 32 datagrams as the shard processes them.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blindfold::forwarder::ice::MAX_RESPONSE;
use blindfold::forwarder::packet;
use blindfold::forwarder::route::{Router, RouterConfig, Transmit};
use blindfold::forwarder::table::{ConfRoutesBuilder, IngressLimits, Latch, Update};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 32;

/// A router holding 200 conferences of `fanout + 1` endpoints (so lookups hit a table of
/// realistic size), and one publisher's batch of audio-sized packets.
fn setup(fanout: u32) -> (Router, Vec<Vec<u8>>, SocketAddr) {
    let mut r = Router::new(RouterConfig {
        consent_timeout: Duration::from_secs(30),
    });
    let per_conf = fanout + 1;
    let mut ep = 0u32;
    for conf in 0..200u32 {
        let mut b = ConfRoutesBuilder::default();
        let first = ep;
        for _ in 0..per_conf {
            r.apply(Update::Endpoint {
                ep,
                generation: 1,
                conf,
                ice: None,
                limits: IngressLimits {
                    packets_per_sec: 3_000,
                    bytes_per_sec: 3_000_000,
                    burst_ms: 500,
                },
            });
            let addr = SocketAddr::from(([10, (ep >> 16) as u8, (ep >> 8) as u8, ep as u8], 5000));
            r.apply(Update::Address {
                ep,
                generation: 1,
                addr: Some((addr, Latch::Declared)),
            });
            b.own(0x1000 + ep, ep).unwrap();
            ep += 1;
        }
        for publisher in first..ep {
            for sub in first..ep {
                b.subscribe(0x1000 + publisher, sub);
            }
        }
        r.apply(Update::Routes {
            conf,
            routes: Some(Arc::new(b.build())),
        });
    }
    // The publisher is endpoint 0 of conference 100.
    let publisher = 100 * per_conf;
    let src = SocketAddr::from((
        [
            10,
            (publisher >> 16) as u8,
            (publisher >> 8) as u8,
            publisher as u8,
        ],
        5000,
    ));
    let pkts = (0..BATCH as u16)
        .map(|seq| {
            let mut p = vec![0x90, 111];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 0, 3, 0xc0]);
            p.extend_from_slice(&(0x1000 + publisher).to_be_bytes());
            p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x7f, 0, 0]);
            p.extend(std::iter::repeat_n(0xab, 120));
            p
        })
        .collect();
    (r, pkts, src)
}

fn hot_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_batch");
    for fanout in [1u32, 4, 16] {
        let (mut router, pkts, src) = setup(fanout);
        let mut out: Vec<Transmit> = Vec::with_capacity(BATCH * fanout as usize + 64);
        let mut reply = [0u8; MAX_RESPONSE];
        g.throughput(Throughput::Elements(BATCH as u64 * u64::from(fanout)));
        g.bench_function(format!("fanout_{fanout}"), |b| {
            // Time moves on as in a real shard (one clock read per batch), so the
            // ingress bucket refills and never starts dropping.
            let start = Instant::now();
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                let now = start + Duration::from_millis(n * 20);
                out.clear();
                for (i, p) in pkts.iter().enumerate() {
                    router.handle(i as u16, black_box(p), src, now, &mut out, &mut reply);
                }
                assert_eq!(out.len(), BATCH * fanout as usize);
                black_box(&out);
            })
        });
    }
    g.finish();

    let pkt = &setup(1).1[0];
    c.bench_function("classify_and_read_ssrc", |b| {
        b.iter(|| {
            let p = black_box(pkt.as_slice());
            black_box((packet::classify(p), packet::rtp_ssrc(p)))
        })
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
