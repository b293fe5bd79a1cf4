//! SRTP protect/unprotect throughput (AEAD_AES_128_GCM with a 4-octet MKI) for 100-octet
//! audio and 1200-octet video payloads. Buffers are reused: no allocation per packet.

use std::hint::black_box;

use blindfold::e2ee::{EpochId, RTP_OVERHEAD, SrtpKeys, SrtpReceiver, SrtpSender};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const HEADER: usize = 12;

fn packet(payload: usize, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    p.resize(HEADER + payload, 0xa5);
    p
}

fn keys() -> SrtpKeys {
    SrtpKeys::derive(&[7; 16], &[9; 12], Some(EpochId::new(1, 0)))
}

fn protect(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_protect");
    for payload in [100usize, 1200] {
        group.throughput(Throughput::Bytes(payload as u64));
        group.bench_function(BenchmarkId::new("bytes", payload), |b| {
            let k = keys();
            let mut sender = SrtpSender::new();
            let mut buf = vec![0u8; HEADER + payload + RTP_OVERHEAD];
            let template = packet(payload, 0);
            let mut seq = 0u16;
            b.iter(|| {
                buf[..template.len()].copy_from_slice(&template);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                seq = seq.wrapping_add(1);
                black_box(sender.protect_rtp(&k, &mut buf, template.len()).unwrap())
            });
        });
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("packets", payload), |b| {
            let k = keys();
            let mut sender = SrtpSender::new();
            let mut buf = vec![0u8; HEADER + payload + RTP_OVERHEAD];
            let template = packet(payload, 0);
            let mut seq = 0u16;
            b.iter(|| {
                buf[..template.len()].copy_from_slice(&template);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                seq = seq.wrapping_add(1);
                black_box(sender.protect_rtp(&k, &mut buf, template.len()).unwrap())
            });
        });
    }
    group.finish();
}

fn unprotect(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_unprotect");
    for payload in [100usize, 1200] {
        // 65536 distinct packets, so replay protection stays on and never trips within
        // a run shorter than one pass; each pass uses a fresh receiver.
        let k = keys();
        let mut sender = SrtpSender::new();
        let protected: Vec<Vec<u8>> = (0..=u16::MAX)
            .map(|seq| {
                let mut p = packet(payload, seq);
                sender.protect_rtp_vec(&k, &mut p).unwrap();
                p
            })
            .collect();
        for (unit, throughput) in [
            ("bytes", Throughput::Bytes(payload as u64)),
            ("packets", Throughput::Elements(1)),
        ] {
            group.throughput(throughput);
            group.bench_function(BenchmarkId::new(unit, payload), |b| {
                let mut receiver = SrtpReceiver::new();
                let mut buf = vec![0u8; protected[0].len()];
                let mut i = 0usize;
                b.iter(|| {
                    if i == protected.len() {
                        i = 0;
                        receiver = SrtpReceiver::new();
                    }
                    buf.copy_from_slice(&protected[i]);
                    i += 1;
                    black_box(receiver.unprotect_rtp(&k, &mut buf).unwrap())
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, protect, unprotect);
criterion_main!(benches);
