//! Media key schedule costs: one ratchet step (HKDF-SHA256 over the epoch secret) and a step
//! plus the sender's SRTP keys. The MLS costs of a join or a leave are measured by
//! `blindfold group-cost` (a whole group in memory; see the README).

use std::hint::black_box;

use blindfold::e2ee::{KeySchedule, ParticipantId, ScheduleConfig, SrtpKeys};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn ratchet(c: &mut Criterion) {
    let me = ParticipantId::from_bytes([1; 16]);
    let config = ScheduleConfig {
        epoch_interval_ms: 1,
        grace_ms: 0,
        ..ScheduleConfig::default()
    };
    let mut schedule = KeySchedule::new(config);
    schedule.install_generation(1, &[7; 32], 0, 0);
    let mut group = c.benchmark_group("ratchet");
    group.throughput(Throughput::Elements(1));
    let mut now = 0u64;
    group.bench_function("step", |b| {
        b.iter(|| {
            now += 1;
            schedule.handle_timeout(now);
            while schedule.poll_event().is_some() {}
            black_box(schedule.sending_epoch())
        })
    });
    group.bench_function("step_and_sender_srtp_keys", |b| {
        b.iter(|| {
            now += 1;
            schedule.handle_timeout(now);
            while schedule.poll_event().is_some() {}
            let epoch = schedule.sending_epoch().unwrap();
            let master = schedule.master_keys(&me, epoch).unwrap();
            black_box(SrtpKeys::derive(master.key(), master.salt(), Some(epoch)))
        })
    });
    group.finish();
}

criterion_group!(benches, ratchet);
criterion_main!(benches);
