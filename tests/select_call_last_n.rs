//! Selective forwarding in a real call: `blindfold serve` and `blindfold signal` as child
//! processes on loopback, six participants in this process publishing audio with its
//! level and simulcast video with frame marking; five take turns speaking and receive
//! last-N 2, the sixth (the control receiver) asks for every video and top-K audio 1.
//!
//! Asserts the demo's selective checks, each of which carries its own control: no
//! receiver is ever handed an undecodable frame; each last-N receiver gets at most 2
//! videos at a time (the control receiver gets more); video follows the speaker within
//! the stated bound (credited to the wrong speaker it would not); every audio stream
//! reaches every last-N receiver (the top-K 1 control misses most). The layers are lighter
//! than the demo's so the call fits a loaded 2-core machine; the forwarder's rules do not
//! depend on bitrates.

mod common;

use std::time::{Duration, Instant};

use blindfold::client::simulcast::LayerSpec;
use blindfold::client::{Identity, Participant, ParticipantConfig, SelectiveConfig, VideoConfig};
use blindfold::demo::selective::{self, Recording};
use common::child::Proc;

const TOKEN: &str = "select-token";
const DEADLINE: Duration = Duration::from_secs(20);
const PARTICIPANTS: usize = 6;
const LAST_N: u32 = 2;
/// Longer than the demo's: detection slows on a loaded machine, and a turn must be
/// detected within itself.
const TURN: Duration = Duration::from_secs(5);

#[test]
fn receivers_get_last_n_decodable_video_that_follows_the_speaker() {
    let serve = Proc::spawn(&[
        "serve",
        "--media",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--control-token",
        TOKEN,
        "--shards",
        "2",
        "--pin",
        "false",
    ]);
    let _media = serve.line("media ", DEADLINE);
    let control_url = serve.line("control ", DEADLINE);
    let signal = Proc::spawn(&[
        "signal",
        "--listen",
        "127.0.0.1:0",
        "--forwarder",
        &control_url,
        "--control-token",
        TOKEN,
    ]);
    let ws = signal.line("signal ", DEADLINE);

    let mut call_secret = [0u8; 32];
    rand::fill(&mut call_secret);
    let control = PARTICIPANTS - 1;
    let layers = vec![
        LayerSpec {
            bitrate_bps: 30_000,
            fps: 15,
        },
        LayerSpec {
            bitrate_bps: 60_000,
            fps: 15,
        },
        LayerSpec {
            bitrate_bps: 120_000,
            fps: 15,
        },
    ];
    let mut ps: Vec<Participant> = Vec::new();
    for i in 0..PARTICIPANTS {
        let mut c = ParticipantConfig::new(
            &ws,
            call_secret,
            Identity::generate(&format!("speaker{i}@example.org"), "select-laptop"),
        );
        c.video = Some(VideoConfig::default());
        c.selective = SelectiveConfig {
            simulcast: true,
            last_n: (i != control).then_some(LAST_N),
            top_k_audio: (i == control).then_some(1),
            layers: Some(layers.clone()),
            ..SelectiveConfig::default()
        };
        let p = Participant::spawn(c).expect("participant starts");
        p.wait_ready(DEADLINE).expect("participant joins");
        ps.push(p);
    }
    // Every receiver has a video flowing (the forwarder's order before anyone spoke) before
    // the turns start: the calls' routes and receive choices are in place.
    for (i, p) in ps.iter().enumerate() {
        let deadline = Instant::now() + DEADLINE;
        while p.video_stats().iter().all(|(_, s)| s.decoded == 0) {
            assert!(
                Instant::now() < deadline,
                "participant {i} decoded no video"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let start = Instant::now();
    let speakers: Vec<usize> = (0..control).collect();
    let until = start + TURN * speakers.len() as u32;
    let (turns, samples) = selective::run_turns(&ps, &speakers, TURN, until);
    let rec = Recording {
        ids: ps.iter().map(|p| p.id().to_hex()).collect(),
        last_n_receivers: speakers.clone(),
        last_n: Some(LAST_N),
        control: Some(control),
        turns,
        samples,
        end: Instant::now(),
    };

    let mut checks = vec![selective::decodable(&ps)];
    checks.extend(selective::at_most_n(&ps, &rec));
    checks.extend(selective::follows(&ps, &rec).map(|(c, _)| c));
    checks.push(selective::every_audio(&ps, &rec, start));
    let report: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "[{}] {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            )
        })
        .collect();
    eprintln!("{report:#?}");
    // SELECT_DEBUG=1 prints every receiver's view (turns, starts, events) for diagnosis.
    if std::env::var("SELECT_DEBUG").is_ok() {
        let short = |id: &str| rec.ids.iter().position(|x| x == id).unwrap_or(99);
        for t in &rec.turns {
            eprintln!(
                "turn speaker {} at {}",
                t.speaker,
                t.at.duration_since(start).as_millis()
            );
        }
        for (i, p) in ps.iter().enumerate() {
            eprintln!("receiver {i}");
            for (id, s) in p.video_stats() {
                eprintln!("  from {}: {:?}", short(&id), s);
            }
            for s in p.video_starts() {
                eprintln!(
                    "  start {} at {}",
                    short(&s.publisher),
                    s.at.saturating_duration_since(start).as_millis()
                );
            }
            for (t, who) in p.speaker_events() {
                eprintln!(
                    "  event {} at {}",
                    short(&who),
                    t.saturating_duration_since(start).as_millis()
                );
            }
        }
    }
    assert_eq!(checks.len(), 4, "{report:#?}");
    assert!(checks.iter().all(|c| c.passed), "{report:#?}");
    drop(ps);
    drop(signal);
    drop(serve);
}
