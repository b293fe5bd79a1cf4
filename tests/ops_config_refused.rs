//! A configuration that would silently drop every packet is refused at start: ingress
//! limits whose burst holds less than one maximum datagram make `blindfold serve` exit
//! with an error naming the flags, instead of running a forwarder that forwards nothing.

mod common;
use common::*;
use std::time::Instant;

#[test]
fn serve_refuses_ingress_limits_below_one_packet() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_blindfold"))
        .args([
            "serve",
            "--media",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(["--control-token", TOKEN, "--shards", "1", "--pin", "false"])
        .args(["--ingress-bps", "2000", "--ingress-burst-ms", "500"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running with an ingress burst below one packet");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("--ingress-bps 2000"), "{err}");
    assert!(err.contains("less than one 2048-byte datagram"), "{err}");

    // The same settings through the library are refused too.
    let cfg = blindfold::forwarder::config::ServeArgs {
        ingress_bps: 2000,
        ..Default::default()
    };
    assert!(matches!(
        blindfold::forwarder::Forwarder::start(cfg),
        Err(blindfold::forwarder::StartError::Config(_))
    ));
}
