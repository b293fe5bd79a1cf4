//! A forwarder that was only stalled, not dead: `blindfold serve` stopped with SIGSTOP long
//! enough to be declared lost, so its call moves to the other forwarder; when it runs again
//! (SIGCONT) the service deletes the moved conference there, so it holds no endpoint of a
//! call this service now places elsewhere. Without that, the old conference and its
//! endpoints would stay on it for good.

mod common;

use std::time::Duration;

use blindfold::client::{Identity, Participant, ParticipantConfig};
use common::signal::SignalProcess;
use common::{Api, ServeProcess};

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_stalled_forwarder_that_returns_loses_the_moved_call() {
    let a = ServeProcess::start(1, &[]);
    let b = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start_on(
        &[a.control, b.control],
        &["--health-interval-ms", "200", "--health-failures", "3"],
        &[("BLINDFOLD_SIGNAL_METRICS", "true")],
    );
    let ws = format!("ws://{}/v1/ws", signal.addr);
    let secret: [u8; 32] = rand::random();
    let ps: Vec<Participant> = (0..2)
        .map(|i| {
            let id = Identity::generate(&format!("p{i}@example.org"), "laptop");
            let p = Participant::spawn(ParticipantConfig::new(&ws, secret, id))
                .expect("participant starts");
            p.wait_ready(DEADLINE).expect("participant ready");
            p
        })
        .collect();
    let conf = ps[0].conference().to_hex();
    let (api_a, api_b) = (Api::new(a.control), Api::new(b.control));
    assert!(api_a.get(&conf).all_latched(2), "the call is on A");

    let pid = a.child.id();
    common::send_signal(pid, "-STOP");
    // SIGCONT on every path, so the drop's SIGKILL is not left waiting on a stopped child.
    struct Resume(u32);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }
    let resume = Resume(pid);
    common::wait_until("the move", DEADLINE, || {
        signal.metric("blindfold_signal_moves_total") == Some(1)
            && ps.iter().all(|p| p.stats().moves == 1)
    });
    let n: Vec<u64> = ps.iter().map(|p| p.stats().decrypted).collect();
    for (p, n) in ps.iter().zip(n) {
        assert!(
            p.wait_stats(DEADLINE, |s| s.decrypted >= n + 20),
            "{:?}",
            p.stats()
        );
    }
    common::wait_until("both latched on B", DEADLINE, || {
        api_b
            .client()
            .conference(&conf)
            .is_ok_and(|c| c.all_latched(2))
    });

    drop(resume);
    common::wait_until("the moved conference deleted on A", DEADLINE, || {
        api_a
            .client()
            .list_conferences()
            .is_ok_and(|l| l.conferences.is_empty())
    });
    // The call goes on through B.
    assert!(api_b.get(&conf).all_latched(2));
    for p in ps {
        let (st, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(st.failed, 0, "{st:?}");
    }
}
