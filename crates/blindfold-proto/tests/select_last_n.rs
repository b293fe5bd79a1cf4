//! Last-N, pins and top-K audio: each receiver gets video from the N most recent
//! speakers plus its pins, switching at key frames after the dominant speaker changes,
//! and audio from everyone (or its top K); with speaker detection off, last-N is static.

mod common;
use std::collections::BTreeSet;

use blindfold_proto::model::{ConferenceSettings, Receive};
use common::*;

/// Runs a conversation; returns, per step, who got whose video.
fn run(room: &mut Room, turns: &[(Option<usize>, u64)], n: &mut u64) -> Vec<Delivered> {
    let mut steps = Vec::new();
    for &(who, ms) in turns {
        let speaking: Vec<usize> = who.into_iter().collect();
        for _ in 0..ms / 20 {
            steps.push(room.step(&speaking, true, *n));
            *n += 1;
        }
    }
    steps
}

/// The publishers whose `what` reached receiver `r` in `steps`.
fn sources(steps: &[Delivered], r: usize, what: &str) -> BTreeSet<usize> {
    steps
        .iter()
        .flatten()
        .filter(|(_, w, dsts)| *w == what && dsts.contains(&addr(r as u16)))
        .map(|(p, _, _)| *p)
        .collect()
}

fn last_n(room: &mut Room, n: Option<u32>, k: Option<u32>, detection: bool) {
    room.sim
        .control(|m| {
            m.set_conference_settings(
                "s1",
                ConferenceSettings {
                    speaker_detection: detection,
                    last_n: n,
                    top_k_audio: k,
                },
            )
        })
        .unwrap();
}

#[test]
fn video_follows_the_speaker_and_audio_reaches_everyone() {
    for shards in [1, 2] {
        let mut room = Room::new(6, shards);
        last_n(&mut room, Some(2), None, true);
        let mut n = 0;
        run(&mut room, &[(None, 1000)], &mut n);
        for speaker in [3, 5, 1, 4] {
            let turn = run(&mut room, &[(Some(speaker), 3000)], &mut n);
            // Detection (~0.5 s) plus the next key frame (every 200 ms): by the second
            // half of the turn every other receiver gets the speaker's video...
            let settled = &turn[75..];
            for r in (0..6).filter(|&r| r != speaker) {
                let video = sources(settled, r, "cam");
                assert!(video.contains(&speaker), "{r} lacks {speaker}: {video:?}");
                assert!(video.len() <= 2, "{r} gets {video:?} with last-N 2");
                // ...and every audio stream, throughout.
                let audio = sources(&turn, r, "mic");
                assert_eq!(audio.len(), 5, "{r} hears {audio:?}");
            }
        }
        // The last two speakers are what everyone else sees at the end.
        let tail = run(&mut room, &[(None, 600)], &mut n);
        assert_eq!(sources(&tail, 0, "cam"), BTreeSet::from([1, 4]));
        assert_eq!(sources(&tail, 4, "cam"), BTreeSet::from([1, 5]));
    }
}

#[test]
fn pins_come_on_top_of_last_n() {
    let mut room = Room::new(5, 1);
    last_n(&mut room, Some(1), None, true);
    room.sim
        .control(|m| {
            m.set_receive(
                "s1",
                "p4",
                Receive {
                    pins: vec!["p0".into()],
                    ..Receive::default()
                },
            )
        })
        .unwrap();
    let mut n = 0;
    run(&mut room, &[(None, 1000)], &mut n);
    let turn = run(&mut room, &[(Some(2), 3000)], &mut n);
    assert_eq!(sources(&turn[100..], 4, "cam"), BTreeSet::from([0, 2]));
    assert_eq!(sources(&turn[100..], 3, "cam"), BTreeSet::from([2]));
    // An endpoint's own last-N overrides the conference's.
    room.sim
        .control(|m| {
            m.set_receive(
                "s1",
                "p3",
                Receive {
                    last_n: Some(0),
                    ..Receive::default()
                },
            )
        })
        .unwrap();
    let quiet = run(&mut room, &[(Some(2), 1000)], &mut n);
    assert!(sources(&quiet[10..], 3, "cam").is_empty());
    assert_eq!(sources(&quiet, 3, "mic").len(), 4, "audio is not video");
}

#[test]
fn top_k_audio_keeps_the_speaker_and_the_active() {
    let mut room = Room::new(5, 1);
    last_n(&mut room, None, Some(2), true);
    let mut n = 0;
    run(&mut room, &[(None, 1000)], &mut n);
    let turn = run(&mut room, &[(Some(1), 3000)], &mut n);
    for r in [0, 2, 3, 4] {
        let heard = sources(&turn[60..], r, "mic");
        assert!(heard.contains(&1) && heard.len() <= 2, "{r}: {heard:?}");
        // Video is not limited.
        assert_eq!(sources(&turn[60..], r, "cam").len(), 4);
    }
    // A second talker joins in: heard as soon as it is active, before it is dominant.
    let mut steps = Vec::new();
    for _ in 0..25 {
        steps.push(room.step(&[1, 3], true, n));
        n += 1;
    }
    assert!(sources(&steps[15..], 0, "mic").contains(&3));
    assert!(sources(&steps[15..], 0, "mic").contains(&1));
}

#[test]
fn with_detection_off_last_n_follows_join_order_only() {
    let mut room = Room::new(5, 2);
    last_n(&mut room, Some(2), Some(1), false);
    let mut n = 0;
    run(&mut room, &[(None, 1000)], &mut n);
    let turn = run(&mut room, &[(Some(4), 3000)], &mut n);
    assert!(room.sim.speaker_events().is_empty());
    assert_eq!(sources(&turn[50..], 3, "cam"), BTreeSet::from([0, 1]));
    assert_eq!(sources(&turn[50..], 0, "cam"), BTreeSet::from([1, 2]));
    // Top-K is ignored: every audio stream flows.
    assert_eq!(sources(&turn, 3, "mic").len(), 4);
}
