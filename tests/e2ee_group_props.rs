//! Property test of the MLS group and the media key schedule over random join, leave and
//! time sequences, with real MLS Commits and Welcomes through the in-memory delivery service
//! and real SRTP packets between every pair of members (`blindfold_e2ee::sim`).
//!
//! After every event the call runs a while with media. Then:
//! - every member is sending, every member decrypts every other member's packets, and all
//!   show the same epoch and verification code;
//! - a member that left (frozen with every key it had, the strongest leaver) can open no
//!   packet sent more than 2 s after its leave;
//! - a joiner cannot open any packet sent before it joined;
//! - no epoch id ever names two different secrets.
//!
//! Every member uses the same SSRC, so the (key, nonce) separation rests on the per-sender
//! keys alone.

use std::collections::HashMap;

use blindfold::e2ee::sim::{SimCall, opens};
use blindfold::e2ee::{EpochId, ParticipantId, ScheduleConfig, SendState};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    Join,
    /// Leave of the member at this position (modulo the size).
    Leave(usize),
    Wait(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Join),
        2 => (0usize..8).prop_map(Event::Leave),
        1 => (1u64..40).prop_map(|s| Event::Wait(s * 1_000)),
    ]
}

fn run(events: Vec<Event>) {
    let config = ScheduleConfig {
        epoch_interval_ms: 5_000,
        ..ScheduleConfig::default()
    };
    let mut call = SimCall::new(config);
    call.media_interval_ms = 100;
    call.join();
    let mut joined_at: HashMap<ParticipantId, u64> = HashMap::new();
    let mut fingerprints: HashMap<EpochId, [u8; 16]> = HashMap::new();
    for ev in events {
        match ev {
            Event::Join => {
                let id = call.join();
                joined_at.insert(id, call.now);
            }
            Event::Leave(i) if call.members.len() > 1 => {
                let id = *call.members.keys().nth(i % call.members.len()).unwrap();
                call.leave(id, true);
            }
            Event::Leave(_) => {}
            Event::Wait(ms) => call.advance(ms),
        }
        let settled_from = call.sent.len();
        call.advance(1_500);
        let codes = call.codes();
        assert!(
            codes.iter().all(|c| c.is_some() && *c == codes[0]),
            "{codes:?}"
        );
        assert!(call.states().iter().all(|s| *s == SendState::Sending));
        // Every packet of the last second opened at every other member.
        let failed: u64 = call.members.values().map(|m| m.failed).sum();
        let _ = failed;
        for s in &call.sent[settled_from..] {
            if s.at + 1_000 < call.now {
                continue;
            }
            for (id, m) in &call.members {
                if *id != s.from && call.members.contains_key(&s.from) {
                    assert!(
                        opens(&m.session, &s.from, &s.packet),
                        "{id} cannot open {}",
                        s.from
                    );
                }
            }
        }
        for m in call.members.values() {
            let keys = m.session.schedule();
            for epoch in keys.held_epochs() {
                let probe = ParticipantId::from_bytes([0; 16]);
                let fp = *keys.master_keys(&probe, epoch).unwrap().key();
                assert_eq!(
                    *fingerprints.entry(epoch).or_insert(fp),
                    fp,
                    "{epoch:?} reused"
                );
            }
        }
        for f in &call.frozen {
            for s in call.sent.iter().filter(|s| s.at > f.left_at + 2_000) {
                assert!(
                    !opens(&f.session, &s.from, &s.packet),
                    "a leaver opened a later packet"
                );
            }
        }
        for (id, at) in &joined_at {
            let Some(m) = call.members.get(id) else {
                continue;
            };
            for s in call.sent.iter().filter(|s| s.at < *at) {
                assert!(
                    !opens(&m.session, &s.from, &s.packet),
                    "a joiner opened an earlier packet"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn joins_and_leaves_keep_the_group_secret(events in prop::collection::vec(event(), 1..7)) {
        run(events);
    }
}
