//! A signalling service that drops every MLS Commit after a member leaves (test-only hostile
//! mode) cannot keep the leaver able to decrypt: within 1.5 s of the leave every remaining
//! member stops sending and shows it, nothing sent 2 s after the leave opens with the
//! leaver's keys, and the leaver (which kept every key) still opens what came just before.
//! Real forwarder and service in this process, real UDP and WebSockets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use blindfold::client::{Identity, Participant, ParticipantConfig};
use blindfold::e2ee::{SendState, StallReason};
use blindfold::signal::hostile::Action;
use blindfold::signal::proto::ServerMessage;
use blindfold::signal::{SignalArgs, SignalServer};

#[test]
fn dropped_commits_stall_the_call_and_the_leaver_opens_nothing_later() {
    let fwd = common::forwarder(1);
    let hostile = Arc::new(AtomicBool::new(false));
    let h = hostile.clone();
    let policy = move |msg: &ServerMessage, _: &str, _: &str, _: Option<u64>| {
        let is_handshake = matches!(msg, ServerMessage::Handshake { .. });
        if h.load(Ordering::SeqCst) && is_handshake {
            Action::Drop
        } else {
            Action::Deliver
        }
    };
    let signal = SignalServer::start_hostile(
        &SignalArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            forwarders: vec![format!("http://{}", fwd.control_addr())],
            control_token: common::TOKEN.into(),
            debug_state: false,
            metrics: false,
            speaker_detection: true,
            limits: Default::default(),
            health: Default::default(),
        },
        Arc::new(policy),
    )
    .unwrap();
    let secret: [u8; 32] = rand::random();
    let config = |i: usize| {
        let mut c = ParticipantConfig::new(
            &signal.ws_url(),
            secret,
            Identity::generate(&format!("p{i}"), "d"),
        );
        c.record = if i == 1 { 100_000 } else { 0 };
        c.keep_keys_after_leave = i == 2;
        c
    };
    let ps: Vec<Participant> = (0..3)
        .map(|i| {
            let p = Participant::spawn(config(i)).unwrap();
            p.wait_ready(common::DEADLINE).expect("ready");
            p
        })
        .collect();
    for p in &ps {
        assert!(p.wait_stats(common::DEADLINE, |s| s.decrypted > 30));
    }
    hostile.store(true, Ordering::SeqCst);
    let left_at = ps[2].leave(common::DEADLINE).unwrap();
    for p in &ps[..2] {
        assert!(
            p.wait_send_state(common::DEADLINE, |s| s
                == SendState::Stalled(StallReason::RekeyOverdue)),
            "a member kept sending: {:?}",
            p.send_state()
        );
    }
    let stalled_at = Instant::now();
    assert!(
        stalled_at.duration_since(left_at) < Duration::from_millis(1_500 + 1_000),
        "stalled late"
    );
    // Give a sender that did not stop every chance to show it.
    std::thread::sleep(Duration::from_millis(1_500));
    for p in &ps[..2] {
        assert!(p.stats().unsent_stalled > 10, "{:?}", p.stats());
        assert_eq!(
            p.send_state(),
            Some(SendState::Stalled(StallReason::RekeyOverdue))
        );
    }
    let recording = ps[1].captured();
    let later: Vec<Vec<u8>> = recording
        .iter()
        .filter(|c| c.at > left_at + Duration::from_secs(2))
        .map(|c| c.data.clone())
        .collect();
    let before: Vec<Vec<u8>> = recording
        .iter()
        .filter(|c| c.at < left_at)
        .rev()
        .take(20)
        .map(|c| c.data.clone())
        .collect();
    let late = ps[2].probe(later, common::DEADLINE).unwrap();
    let control = ps[2].probe(before, common::DEADLINE).unwrap();
    assert_eq!(late.opened, 0, "the leaver opened {late:?}");
    assert!(
        control.tried > 0 && control.opened == control.tried,
        "control {control:?}"
    );
    // Nothing sent by the others more than 1.5 s after the leave reached the recorder.
    for c in &recording {
        let seq = u16::from_be_bytes([c.data[2], c.data[3]]);
        let ssrc = u32::from_be_bytes([c.data[8], c.data[9], c.data[10], c.data[11]]);
        if let Some(sent) = ps[0].send_time(ssrc, seq) {
            assert!(
                sent < left_at + Duration::from_millis(1_600),
                "sent after the deadline"
            );
        }
    }
    for p in ps {
        let _ = p.stop();
    }
}
