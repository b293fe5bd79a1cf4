//! SIGTERM drains: the control API refuses new conferences with 503 while the existing
//! call keeps flowing; the process exits once the last conference is gone.

mod common;
use blindfold::control::client::ControlError;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn sigterm_refuses_new_conferences_and_keeps_calls_until_they_end() {
    let mut serve = ServeProcess::start(1, &["--drain-timeout", "60"]);
    let call = Call::on(serve.media, serve.control);
    let pid = serve.child.id() as i32;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_for(|| matches!(
            call.api.client().create_conference(None),
            Err(ControlError::Unavailable(_))
        )),
        "new conferences are refused while draining"
    );
    // Media still flows in the existing call.
    let p = rtp(0xA1, 5, 50);
    call.peer("a").send(&p);
    let mut o = Vec::new();
    call.peer("b")
        .recv_until(|x| x == p.as_slice(), &mut o)
        .expect("the call goes on while draining");
    assert!(serve.alive());
    // Ending the last conference lets the process exit. A probe POST that raced the
    // signal may have created a conference before draining began: end those too.
    for c in call.api.list().conferences {
        call.api
            .client()
            .delete_conference(&c.id)
            .expect("conference deleted");
    }
    // Exit joins every thread (shards, control, events); allow for a loaded machine.
    let deadline = Instant::now() + 3 * DEADLINE;
    while serve.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !serve.alive(),
        "the forwarder exits once drained; its log:\n{}",
        serve.logs()
    );
}

#[test]
fn a_second_signal_exits_at_once_even_with_calls_running() {
    let mut serve = ServeProcess::start(1, &["--drain-timeout", "600"]);
    let call = Call::on(serve.media, serve.control);
    let pid = serve.child.id().to_string();
    let kill = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    kill("-INT");
    assert!(wait_for(|| matches!(
        call.api.client().create_conference(None),
        Err(ControlError::Unavailable(_))
    )));
    assert!(serve.alive(), "the first SIGINT drains, it does not exit");
    kill("-INT");
    // The drain deadline is ten minutes away: only the second signal can end it now.
    let deadline = Instant::now() + 3 * DEADLINE;
    while serve.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!serve.alive(), "a second SIGINT exits at once");
}
