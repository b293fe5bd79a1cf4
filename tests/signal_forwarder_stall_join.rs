//! A joiner caught by a move: `blindfold serve` A is stopped (SIGSTOP) just as a third
//! participant joins, so its endpoint is being made on A while the service declares A lost
//! and moves the call to B; A then runs again (SIGCONT) and answers that late request. The
//! joiner must not be left with an endpoint on A while its call is on B: either it is
//! refused at join time (and may join again, landing on B), or it was taken by the move and
//! hears both others through B. Without the check at admission it was admitted with A's
//! credentials and never latched (seen: "timed out latching to the forwarder").

mod common;

use std::time::Duration;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use common::signal::SignalProcess;
use common::{Api, ServeProcess};

const DEADLINE: Duration = Duration::from_secs(20);

/// SIGCONT on drop, so a failing test does not leave the child stopped.
struct Resume(u32);
impl Drop for Resume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn a_joiner_caught_by_a_move_is_not_stranded_on_the_old_forwarder() {
    let a = ServeProcess::start(1, &[]);
    let b = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start_on(
        &[a.control, b.control],
        &["--health-interval-ms", "200", "--health-failures", "3"],
        &[("BLINDFOLD_SIGNAL_METRICS", "true")],
    );
    let ws = format!("ws://{}/v1/ws", signal.addr);
    let secret: [u8; 32] = rand::random();
    let spawn = |i: usize| {
        let id = Identity::generate(&format!("p{i}@example.org"), "laptop");
        let mut c = ParticipantConfig::new(&ws, secret, id);
        c.record = 10_000;
        Participant::spawn(c).expect("participant starts")
    };
    let ps: Vec<Participant> = (0..2)
        .map(|i| {
            let p = spawn(i);
            p.wait_ready(DEADLINE).expect("participant ready");
            p
        })
        .collect();
    let conf = ps[0].conference().to_hex();
    let api_b = Api::new(b.control);

    common::send_signal(a.child.id(), "-STOP");
    let resume = Resume(a.child.id());
    let joiner = spawn(2);
    common::wait_until("the move", DEADLINE, || {
        signal.metric("blindfold_signal_moves_total") == Some(1)
            && ps.iter().all(|p| p.stats().moves == 1)
    });
    drop(resume);

    let joiner = match joiner.wait_ready(DEADLINE) {
        Ok(_) => {
            println!("the joiner was taken by the move");
            joiner
        }
        Err(e) => {
            println!("the joiner failed ({e}); it joins again");
            assert!(
                joiner.joined_at().is_none(),
                "refused at admission, not admitted on the old forwarder: {e}"
            );
            let again = spawn(3);
            again.wait_ready(DEADLINE).expect("the second try joins");
            again
        }
    };
    let me = joiner.id().to_hex();
    common::wait_until("the joiner latched on B", DEADLINE, || {
        api_b
            .client()
            .conference(&conf)
            .is_ok_and(|c| c.endpoint(&me).is_some_and(|e| e.latched) && c.all_latched(3))
    });
    assert!(
        joiner.wait_stats(DEADLINE, |s| s.decrypted >= 40),
        "{:?}",
        joiner.stats()
    );
    assert_eq!(joiner.stats().failed, 0);
    let heard: Vec<u32> = joiner
        .captured()
        .iter()
        .filter_map(|c| Some(u32::from_be_bytes(c.data.get(8..12)?.try_into().ok()?)))
        .collect();
    for s in ps.iter().flat_map(Participant::ssrcs) {
        assert!(heard.contains(&s), "the joiner hears every other member");
    }
    for p in ps.into_iter().chain([joiner]) {
        let (_, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
    }
}
