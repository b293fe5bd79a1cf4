//! Key-schedule costs: sealing one key message (HPKE auth mode, X25519 + ChaCha20-Poly1305)
//! and one ratchet step (HKDF-SHA256 over the epoch secret, then the sender's SRTP keys).

use std::hint::black_box;

use blindfold::e2ee::{
    CallSecret, EpochId, HpkeTransport, KeyMessageHeader, KeyPair, KeyPurpose, KeySchedule,
    KeyTransport, Member, ScheduleConfig, SrtpKeys, seal_key_message,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn seal(c: &mut Criterion) {
    let call = CallSecret::from_bytes([1; 32]);
    let alice = call.participant_id(b"alice", b"1");
    let bob = call.participant_id(b"bob", b"1");
    let bob_keys = KeyPair::generate(&mut StdRng::seed_from_u64(2));
    let mut transport = HpkeTransport::new(
        alice,
        KeyPair::generate(&mut StdRng::seed_from_u64(1)),
        Box::new(StdRng::seed_from_u64(3)),
    );
    transport.add_peer(bob, &bob_keys.public_bytes()).unwrap();
    let header = KeyMessageHeader {
        purpose: KeyPurpose::EpochSecret,
        sender: alice,
        recipient: bob,
        epoch: EpochId::new(9, 0),
    };
    let mut group = c.benchmark_group("key_message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal", |b| {
        b.iter(|| black_box(seal_key_message(&mut transport, &header, &[7; 32]).unwrap()))
    });
    group.finish();
}

fn ratchet(c: &mut Criterion) {
    let call = CallSecret::from_bytes([1; 32]);
    let keys = KeyPair::generate(&mut StdRng::seed_from_u64(1));
    let me = Member {
        id: call.participant_id(b"alice", b"1"),
        joined_at: 1,
        transport_key: keys.public_bytes().to_vec(),
    };
    let transport = HpkeTransport::new(me.id, keys, Box::new(StdRng::seed_from_u64(2)));
    let config = ScheduleConfig {
        epoch_interval_ms: 1,
        grace_ms: 0,
        ..ScheduleConfig::default()
    };
    let mut schedule = KeySchedule::new(
        config,
        &me,
        vec![],
        transport,
        Box::new(StdRng::seed_from_u64(3)),
        0,
    )
    .unwrap();
    let mut group = c.benchmark_group("ratchet");
    group.throughput(Throughput::Elements(1));
    let mut now = 0u64;
    group.bench_function("step", |b| {
        b.iter(|| {
            now += 1;
            schedule.handle_timeout(now).unwrap();
            while schedule.poll_output().is_some() {}
            black_box(schedule.sending_epoch())
        })
    });
    group.bench_function("step_and_sender_srtp_keys", |b| {
        b.iter(|| {
            now += 1;
            schedule.handle_timeout(now).unwrap();
            while schedule.poll_output().is_some() {}
            let epoch = schedule.sending_epoch().unwrap();
            let master = schedule.master_keys(&me.id, epoch).unwrap();
            black_box(SrtpKeys::derive(master.key(), master.salt(), Some(epoch)))
        })
    });
    group.finish();
}

criterion_group!(benches, seal, ratchet);
criterion_main!(benches);
