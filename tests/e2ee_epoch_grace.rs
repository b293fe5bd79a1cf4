//! Reordering across an epoch boundary: a packet of the previous epoch that arrives after
//! the switch decrypts within the grace window (2 s) and fails once it has passed and the
//! old secret was erased. Checked for a ratchet step and for a rekey after a leave.

use blindfold::e2ee::{
    CallSecret, E2eeError, E2eeSession, EpochId, HpkeTransport, Input, KeyPair, KeySchedule,
    Member, Output, ParticipantId, ScheduleConfig, SrtpError,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

type Session = E2eeSession<HpkeTransport>;

fn member(call: &CallSecret, n: u64, seed: u64) -> (Member, KeyPair) {
    let keys = KeyPair::generate(&mut StdRng::seed_from_u64(seed));
    let id = call.participant_id(b"user", &n.to_be_bytes());
    let m = Member {
        id,
        joined_at: n,
        transport_key: keys.public_bytes().to_vec(),
    };
    (m, keys)
}

fn session(me: &Member, keys: KeyPair, roster: Vec<Member>, now: u64, seed: u64) -> Session {
    let transport = HpkeTransport::new(me.id, keys, Box::new(StdRng::seed_from_u64(seed)));
    let schedule = KeySchedule::new(
        ScheduleConfig::default(),
        me,
        roster,
        transport,
        Box::new(StdRng::seed_from_u64(seed + 1)),
        now,
    )
    .unwrap();
    E2eeSession::new(schedule)
}

/// Delivers every pending key message among `sessions`.
fn deliver(sessions: &mut [&mut Session], now: u64) {
    loop {
        let mut queue = Vec::new();
        for s in sessions.iter_mut() {
            let from = s.me();
            while let Some(out) = s.poll_output() {
                if let Output::SendKeyMessage { to, message } = out {
                    queue.push((from, to, message));
                }
            }
        }
        if queue.is_empty() {
            return;
        }
        for (from, to, message) in queue {
            for s in sessions.iter_mut().filter(|s| s.me() == to) {
                s.handle_input(
                    Input::KeyMessage {
                        from,
                        message: &message,
                    },
                    now,
                )
                .unwrap();
            }
        }
    }
}

fn packet(s: &mut Session, seq: u16) -> (Vec<u8>, EpochId) {
    let mut p = vec![
        0x80,
        96,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0,
        1,
        0xab,
        0xcd,
        0,
        1,
    ];
    p.extend_from_slice(b"media payload");
    s.protect_rtp_vec(&mut p).unwrap();
    (p, s.sending_epoch().unwrap())
}

fn receive(s: &mut Session, from: &ParticipantId, p: &[u8], now: u64) -> Result<usize, E2eeError> {
    let mut buf = p.to_vec();
    s.unprotect_rtp(from, &mut buf, now)
}

fn pair() -> (Session, Session, Member, Member) {
    let call = CallSecret::from_bytes([3; 32]);
    let (ma, ka) = member(&call, 1, 10);
    let (mb, kb) = member(&call, 2, 20);
    let mut a = session(&ma, ka, vec![], 0, 11);
    let mut b = session(&mb, kb, vec![ma.clone()], 0, 21);
    a.handle_input(Input::MemberJoined(mb.clone()), 0).unwrap();
    deliver(&mut [&mut a, &mut b], 0);
    assert_eq!(a.sending_epoch(), b.sending_epoch());
    (a, b, ma, mb)
}

fn ratchet_step_scenario(late_at: u64) -> Result<usize, E2eeError> {
    let (mut a, mut b, ma, _) = pair();
    let (old, e_old) = packet(&mut a, 1);
    a.handle_timeout(30_000).unwrap();
    b.handle_timeout(30_000).unwrap();
    let (new, e_new) = packet(&mut a, 2);
    assert_eq!(
        e_new,
        e_old.next_step().unwrap(),
        "the timer ratcheted one step"
    );
    // The new-epoch packet arrives first; the receiver follows it at t = 30 s.
    receive(&mut b, &ma.id, &new, 30_000).unwrap();
    assert_eq!(b.sending_epoch(), Some(e_new));
    b.handle_timeout(late_at).unwrap();
    receive(&mut b, &ma.id, &old, late_at)
}

#[test]
fn reordered_packet_of_previous_step_decrypts_within_grace() {
    assert!(ratchet_step_scenario(30_000 + 1_999).is_ok());
}

#[test]
fn reordered_packet_of_previous_step_fails_after_grace() {
    assert!(matches!(
        ratchet_step_scenario(30_000 + 2_000),
        Err(E2eeError::Srtp(SrtpError::UnknownEpoch(_)))
    ));
}

fn rekey_scenario(late_by: u64) -> Result<usize, E2eeError> {
    let call = CallSecret::from_bytes([4; 32]);
    let (ma, ka) = member(&call, 1, 30);
    let (mb, kb) = member(&call, 2, 40);
    let (mc, kc) = member(&call, 3, 50);
    let mut a = session(&ma, ka, vec![], 0, 31);
    let mut b = session(&mb, kb, vec![ma.clone()], 0, 41);
    a.handle_input(Input::MemberJoined(mb.clone()), 0).unwrap();
    deliver(&mut [&mut a, &mut b], 0);
    let mut c = session(&mc, kc, vec![ma.clone(), mb.clone()], 0, 51);
    a.handle_input(Input::MemberJoined(mc.clone()), 0).unwrap();
    b.handle_input(Input::MemberJoined(mc.clone()), 0).unwrap();
    deliver(&mut [&mut a, &mut b, &mut c], 0);

    let (old, e_old) = packet(&mut a, 1);
    a.handle_input(Input::MemberLeft(mc.id), 100).unwrap();
    b.handle_input(Input::MemberLeft(mc.id), 100).unwrap();
    deliver(&mut [&mut a, &mut b], 100);
    a.handle_timeout(600).unwrap();
    b.handle_timeout(600).unwrap();
    let (new, e_new) = packet(&mut a, 2);
    assert_ne!(
        e_new.generation(),
        e_old.generation(),
        "a leave starts a new generation"
    );
    receive(&mut b, &ma.id, &new, 600).unwrap();
    b.handle_timeout(600 + late_by).unwrap();
    receive(&mut b, &ma.id, &old, 600 + late_by)
}

#[test]
fn reordered_packet_across_rekey_decrypts_within_grace() {
    assert!(rekey_scenario(1_500).is_ok());
}

#[test]
fn reordered_packet_across_rekey_fails_after_grace() {
    assert!(matches!(
        rekey_scenario(2_000),
        Err(E2eeError::Srtp(SrtpError::UnknownEpoch(_)))
    ));
}
