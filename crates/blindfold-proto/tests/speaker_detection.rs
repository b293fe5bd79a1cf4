//! Dominant speaker detection from the audio levels the forwarder reads: clean turns are
//! detected within a bound, a cough into a silent room and a short interjection over the
//! speaker change nothing, and the per-conference switch turns it all off.

mod common;
use std::time::{Duration, Instant};

use blindfold_proto::model::ConferenceSettings;
use common::*;

/// Runs `turns` (speaker, ms) one after another; returns each turn's start.
fn converse(room: &mut Room, turns: &[(Option<usize>, u64)], n: &mut u64) -> Vec<Instant> {
    let mut starts = Vec::new();
    for &(who, ms) in turns {
        starts.push(room.sim.now());
        let speaking: Vec<usize> = who.into_iter().collect();
        for _ in 0..ms / 20 {
            room.step(&speaking, false, *n);
            *n += 1;
        }
    }
    starts
}

fn dominants(room: &Room) -> Vec<(Instant, String)> {
    room.sim
        .speaker_events()
        .iter()
        .map(|(t, e)| (*t, e.dominant.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn clean_turns_are_detected_within_a_second() {
    for shards in [1, 2] {
        let mut room = Room::new(4, shards);
        let mut n = 0;
        // A second of room noise first, as before anyone speaks in a real call.
        converse(&mut room, &[(None, 1000)], &mut n);
        let turns: Vec<(Option<usize>, u64)> =
            [0, 1, 2, 3, 1].iter().map(|&s| (Some(s), 3000)).collect();
        let starts = converse(&mut room, &turns, &mut n);
        let events = dominants(&room);
        assert_eq!(
            events.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>(),
            ["p0", "p1", "p2", "p3", "p1"],
            "one event per turn, in order: {events:?}"
        );
        for ((t, d), start) in events.iter().zip(&starts) {
            let delay = t.duration_since(*start);
            eprintln!("{shards} shard(s): {d} detected {delay:?} after it started");
            assert!(delay <= Duration::from_millis(1000), "{d}: {delay:?}");
        }
        // The recency list puts the latest speakers first.
        let last = &room.sim.speaker_events().last().unwrap().1;
        assert_eq!(&last.recent[..3], ["p1", "p3", "p2"]);
    }
}

#[test]
fn a_cough_or_an_interjection_does_not_take_the_floor() {
    let mut room = Room::new(4, 1);
    let mut n = 0;
    // p0 speaks; p1 says "mhm" (400 ms) over it; p0 goes on.
    converse(&mut room, &[(None, 1000), (Some(0), 2000)], &mut n);
    for _ in 0..20 {
        room.step(&[0, 1], false, n);
        n += 1;
    }
    converse(&mut room, &[(Some(0), 2000), (None, 2000)], &mut n);
    // p2 coughs into the silent room: 200 ms.
    converse(&mut room, &[(Some(2), 200), (None, 2000)], &mut n);
    let events = dominants(&room);
    assert_eq!(
        events.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>(),
        ["p0"],
        "{events:?}"
    );
    // A sustained utterance does.
    converse(&mut room, &[(Some(2), 1500)], &mut n);
    assert_eq!(dominants(&room).last().unwrap().1, "p2");
}

#[test]
fn switching_detection_off_stops_reading_levels_and_events() {
    let mut room = Room::new(3, 1);
    room.sim
        .control(|m| {
            m.set_conference_settings(
                "s1",
                ConferenceSettings {
                    speaker_detection: false,
                    ..ConferenceSettings::default()
                },
            )
        })
        .unwrap();
    let mut n = 0;
    converse(
        &mut room,
        &[(None, 1000), (Some(1), 3000), (Some(2), 3000)],
        &mut n,
    );
    assert!(room.sim.speaker_events().is_empty());
    // Nothing read: an audio packet without its level is not even noticed as missing.
    let h = room.sim.receive(addr(0), &rtp(mic_ssrc(0), 9999, 60));
    assert_eq!(h.dsts().len(), 2, "audio still flows to everyone");
    assert_eq!(room.sim.counters().ext_missing, 0);
    let info = room.sim.model().conference("s1", room.sim.now()).unwrap();
    assert_eq!(info.dominant, None);
    // Back on: detection resumes.
    room.sim
        .control(|m| m.set_conference_settings("s1", ConferenceSettings::default()))
        .unwrap();
    converse(&mut room, &[(Some(2), 2000)], &mut n);
    assert_eq!(dominants(&room).last().unwrap().1, "p2");
    let h = room.sim.receive(addr(0), &rtp(mic_ssrc(0), 10_000, 60));
    assert_eq!(h.dsts().len(), 2);
    assert_eq!(
        room.sim.counters().ext_missing,
        1,
        "a missing level is counted"
    );
}
