//! The forwarder's per-packet userspace work, in ns per forwarded copy: classify (RFC
//! 7983), sender lookup by source address, ingress bucket, SSRC route lookup, one
//! transmit per subscriber, and the batch build that turns transmits into the
//! (bytes, destination) list `sendmmsg` is given. Fan-out 1, 4 and 16; the table holds
//! 256 conferences so lookups are not all cache-hot; a batch is 32 datagrams from
//! different publishers, as a shard sees after one `recvmmsg`. The syscalls themselves
//! are not here: `scripts/bench.sh` measures them against the kernel ceiling.
//!
//! Three groups over the same table shape:
//! - `route`: plain forwarding (tracks without extensions), as before selective
//!   forwarding existed: it must not get slower.
//! - `route_audio_level`: audio tracks declaring the RFC 6464 level, speaker detection on:
//!   every packet's extension is read and fed to the stream's level history.
//! - `route_simulcast`: one layer of a three-layer simulcast track with RFC 9626 frame
//!   marking: every packet's frame marking is read and each subscriber's layer state
//!   checked (every subscriber on this layer, so each packet still makes `fanout` copies).
//!
//! The `relay` group (plain tracks) is the same work for datagrams arriving over a relay link that 256
//! calls share (one peer forwarder's address): the sender is found by (address, SSRC).
//!
//! Criterion reports elements/s with one element = one forwarded copy, so
//! ns per copy = 1e9 ÷ (elements/s).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blindfold_proto::ext::{self, AudioLevel, FrameMarking};
use blindfold_proto::route::{Router, RouterConfig, StunReply, Transmit};
use blindfold_proto::select::{AudioRoute, Media, SelSub, VideoRoute};
use blindfold_proto::table::{ConfRoutesBuilder, IceCreds, IngressLimits, Latch, Update};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};

const BATCH: usize = 32;
const CONFERENCES: u32 = 256;
const EXT_ID: u8 = 3;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    AudioLevel,
    Simulcast,
}

fn addr(ep: u32) -> SocketAddr {
    SocketAddr::from(([10, (ep >> 16) as u8, (ep >> 8) as u8, ep as u8], 40_000))
}

/// The peer forwarder's media address every call's relay declares in the relay bench.
const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 255, 0, 1)),
    10_000,
);

fn ssrc(ep: u32) -> u32 {
    0x1000_0000 + ep
}

/// `CONFERENCES` conferences of `fanout + 1` endpoints, every endpoint publishing one
/// SSRC that all others receive; all latched by STUN with consent far in the future.
fn router(fanout: u32, now: Instant, kind: Kind) -> Router {
    let mut r = Router::new(RouterConfig {
        consent_timeout: Duration::from_secs(30),
    });
    let size = fanout + 1;
    // Limits high enough never to drop, so the bucket arithmetic is still paid.
    let limits = IngressLimits {
        packets_per_sec: 1_000_000_000,
        bytes_per_sec: 4_000_000_000,
        burst_ms: 1000,
    };
    for conf in 0..CONFERENCES {
        let mut b = ConfRoutesBuilder::default();
        for m in 0..size {
            let ep = conf * size + m;
            r.apply(Update::Endpoint {
                ep,
                generation: 1,
                conf,
                ice: Some(IceCreds {
                    ufrag: format!("bench{ep}").into(),
                    pwd: b"benchpwdbenchpwdbenchpwd".as_slice().into(),
                }),
                limits,
            });
            r.apply(Update::Address {
                ep,
                generation: 1,
                addr: Some((
                    addr(ep),
                    Latch::Stun {
                        consent_until: now + Duration::from_secs(3600),
                    },
                )),
            });
            b.own(ssrc(ep), ep).expect("distinct ssrcs");
            match kind {
                Kind::Plain => {}
                Kind::AudioLevel => {
                    let stream = b.audio_stream(AudioRoute {
                        key: ssrc(ep),
                        owner: ep,
                        generation: 1,
                    });
                    b.set_media(
                        ssrc(ep),
                        Media::Audio {
                            stream,
                            ext: EXT_ID,
                        },
                    );
                }
                Kind::Simulcast => {
                    // The benchmarked SSRC is the top of three layers; every other
                    // endpoint subscribes with the top as its target.
                    let subs = (0..size)
                        .filter(|&s| s != m)
                        .map(|s| SelSub {
                            ep: conf * size + s,
                            target: 2,
                        })
                        .collect();
                    let track = b.video_track(VideoRoute {
                        key: ssrc(ep),
                        owner: ep,
                        layers: 3,
                        frame_marking: EXT_ID,
                        subs,
                        state: 0,
                    });
                    b.set_media(ssrc(ep), Media::Video { track, layer: 2 });
                }
            }
        }
        for m in 0..size {
            for s in 0..size {
                b.subscribe(ssrc(conf * size + m), conf * size + s);
            }
        }
        r.apply(Update::Routes {
            conf,
            routes: Some(Arc::new(b.build())),
        });
    }
    r
}

fn rtp(ssrc: u32, len: usize, kind: Kind, key: bool) -> Vec<u8> {
    let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    let octet = match kind {
        Kind::Plain => None,
        Kind::AudioLevel => Some(
            AudioLevel {
                dbov: 20,
                voice: true,
            }
            .to_byte(),
        ),
        Kind::Simulcast => Some(
            FrameMarking {
                start: true,
                end: true,
                independent: key,
                ..FrameMarking::default()
            }
            .to_byte(),
        ),
    };
    if let Some(o) = octet {
        let mut block = Vec::new();
        ext::write_block(&mut block, &[(EXT_ID, &[o])]).expect("valid element");
        ext::insert_block(&mut p, &block).expect("no block yet");
    }
    p.resize(len, 0xa5);
    p
}

/// The measured loop every group shares: route one batch, then the batch build (each
/// transmit becomes the received bytes and a destination, what `sendmmsg` is given).
fn measure(
    group: &mut BenchmarkGroup<'_, WallTime>,
    fanout: u32,
    r: &mut Router,
    batch: &[(Vec<u8>, SocketAddr)],
    tx: &mut Vec<Transmit>,
    reply: &mut StunReply,
    mut now: Instant,
) {
    let mut send: Vec<(&[u8], SocketAddr)> = Vec::with_capacity(tx.capacity());
    group.throughput(Throughput::Elements(BATCH as u64 * u64::from(fanout)));
    group.bench_function(BenchmarkId::new("fanout", fanout), |b| {
        b.iter(|| {
            now += Duration::from_micros(10);
            tx.clear();
            for (i, (pkt, src)) in batch.iter().enumerate() {
                black_box(r.handle(i as u16, pkt, *src, now, tx, reply));
            }
            send.clear();
            send.extend(
                tx.iter()
                    .map(|t| (batch[usize::from(t.buf)].0.as_slice(), t.dst)),
            );
            assert_eq!(send.len(), BATCH * fanout as usize, "every copy routed");
            black_box(&send);
        })
    });
}

fn bench(c: &mut Criterion, name: &str, kind: Kind) {
    let mut group = c.benchmark_group(name);
    for fanout in [1u32, 4, 16] {
        let start = Instant::now();
        let mut r = router(fanout, start, kind);
        let size = fanout + 1;
        let eps = CONFERENCES * size;
        // 32 datagrams from publishers spread over the table (a multiplicative step).
        let publishers: Vec<u32> = (0..BATCH as u32)
            .map(|i| (i * 2_654_435_761u32.wrapping_shr(7) + i * 97) % eps)
            .collect();
        let mut tx: Vec<Transmit> = Vec::with_capacity(BATCH * fanout as usize + BATCH);
        let mut reply = StunReply::new();
        let now = start;
        if kind == Kind::Simulcast {
            // One key frame from every publisher puts its subscribers on the layer.
            for &ep in &publishers {
                let key = rtp(ssrc(ep), 200, kind, true);
                r.handle(0, &key, addr(ep), now, &mut tx, &mut reply);
            }
        }
        let batch: Vec<(Vec<u8>, SocketAddr)> = publishers
            .iter()
            .map(|&ep| (rtp(ssrc(ep), 200, kind, false), addr(ep)))
            .collect();
        measure(&mut group, fanout, &mut r, &batch, &mut tx, &mut reply, now);
    }
    group.finish();
}

fn route(c: &mut Criterion) {
    bench(c, "route", Kind::Plain);
    bench(c, "route_audio_level", Kind::AudioLevel);
    bench(c, "route_simulcast", Kind::Simulcast);
}

/// `CONFERENCES` calls, each with a relay endpoint at one shared peer-forwarder address
/// publishing one SSRC that `fanout` local members receive: every datagram of the batch
/// comes from the shared address and is resolved by (address, SSRC).
fn relay_router(fanout: u32, now: Instant) -> Router {
    let mut r = Router::new(RouterConfig {
        consent_timeout: Duration::from_secs(30),
    });
    let size = fanout + 1;
    for conf in 0..CONFERENCES {
        let mut b = ConfRoutesBuilder::default();
        for m in 0..size {
            let ep = conf * size + m;
            r.apply(Update::Endpoint {
                ep,
                generation: 1,
                conf,
                ice: None,
                limits: IngressLimits::UNLIMITED,
            });
            // Member 0 is the call's relay, at the peer's address; the others are latched.
            let at = if m == 0 {
                (PEER, Latch::Declared)
            } else {
                (
                    addr(ep),
                    Latch::Stun {
                        consent_until: now + Duration::from_secs(3600),
                    },
                )
            };
            r.apply(Update::Address {
                ep,
                generation: 1,
                addr: Some(at),
            });
        }
        b.own(ssrc(conf * size), conf * size)
            .expect("distinct ssrcs");
        for s in 1..size {
            b.subscribe(ssrc(conf * size), conf * size + s);
        }
        r.apply(Update::Routes {
            conf,
            routes: Some(Arc::new(b.build())),
        });
    }
    r
}

/// The relay path: the same batch work, every datagram from the one address all calls'
/// relays share (the demultiplexing lookup by SSRC on top of the route lookup).
fn relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    for fanout in [1u32, 4, 16] {
        let start = Instant::now();
        let mut r = relay_router(fanout, start);
        let size = fanout + 1;
        let batch: Vec<(Vec<u8>, SocketAddr)> = (0..BATCH as u32)
            .map(|i| {
                let conf = (i * 2_654_435_761u32.wrapping_shr(7) + i * 97) % CONFERENCES;
                (rtp(ssrc(conf * size), 200, Kind::Plain, false), PEER)
            })
            .collect();
        let mut tx: Vec<Transmit> = Vec::with_capacity(BATCH * fanout as usize + BATCH);
        measure(
            &mut group,
            fanout,
            &mut r,
            &batch,
            &mut tx,
            &mut StunReply::new(),
            start,
        );
    }
    group.finish();
}

criterion_group!(benches, route, relay);
criterion_main!(benches);
