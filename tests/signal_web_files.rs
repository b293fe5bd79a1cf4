//! The signalling service serves the web client's files from its own binary: the SFrame
//! layer and its transform worker at `/web/…`, byte for byte what the repository holds,
//! as JavaScript, not sniffable; anything else under `/web/` is 404.

mod common;

use blindfold::signal::{SignalArgs, SignalServer};

#[test]
fn web_files_are_served_from_the_binary() {
    let fwd = common::forwarder(1);
    let signal = SignalServer::start(&SignalArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        forwarders: vec![format!("http://{}", fwd.control_addr())],
        control_token: common::TOKEN.into(),
        debug_state: false,
        metrics: false,
        limits: Default::default(),
        health: Default::default(),
        speaker_detection: true,
    })
    .unwrap();
    let base = format!("http://{}", signal.local_addr());
    for (path, file) in [
        (
            "/web/sframe.js",
            include_str!("../crates/blindfold-signal/web/sframe.js"),
        ),
        (
            "/web/sframe-worker.js",
            include_str!("../crates/blindfold-signal/web/sframe-worker.js"),
        ),
    ] {
        let mut r = ureq::get(&format!("{base}{path}")).call().unwrap();
        let ctype = r
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let nosniff = r
            .headers()
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(ctype.starts_with("text/javascript"), "{path}: {ctype}");
        assert_eq!(nosniff.as_deref(), Some("nosniff"));
        assert_eq!(r.body_mut().read_to_string().unwrap(), file, "{path}");
    }
    for path in [
        "/web/nope.js",
        "/web/..%2Fsrc%2Flib.rs",
        "/web/sframe.js.map",
    ] {
        match ureq::get(&format!("{base}{path}")).call() {
            Err(ureq::Error::StatusCode(404)) => {}
            other => panic!("{path}: {other:?}"),
        }
    }
    signal.stop();
    fwd.stop();
}
