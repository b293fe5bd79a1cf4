//! Two real browsers (headless Chromium, fake camera and microphone) in one call through
//! the edge and a real forwarder: each decodes the other's video and receives its audio.
//! The edge terminates each browser's ICE and DTLS-SRTP and is one forwarder endpoint per
//! browser; the forwarder sees plain RTP from two endpoints and routes it as for any
//! participant. (No SFrame here: this is the transport; tests/web_* add the end-to-end
//! layer.)

mod common;

use std::time::Duration;

use blindfold::control::TrackKind;
use blindfold::edge::{EdgeArgs, EdgeServer};
use common::chromium::{self, Chromium};
use common::{Api, Creds, track};
use serde_json::json;

const PAGE: &str = include_str!("pages/edge_probe.html");

fn connect_js(edge: &str, creds: &Creds, media: std::net::SocketAddr) -> String {
    let ice = json!({"ufrag": creds.ufrag, "pwd": creds.pwd});
    let cands = json!([{"ip": media.ip().to_string(), "port": media.port()}]);
    format!("bf.connect('http://{edge}', {ice}, {cands})")
}

#[test]
fn two_browsers_decode_each_other_through_the_edge() {
    assert!(
        chromium::available(),
        "this test needs Debian's `chromium` (.ci/run installs it)"
    );
    let fwd = common::forwarder(1);
    let api = Api::new(fwd.control_addr());
    api.conference("c1");
    let creds: Vec<Creds> = ["a", "b"].iter().map(|e| api.endpoint("c1", e)).collect();
    let edge = EdgeServer::start(&EdgeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        forwarders: vec![fwd.media_addr()],
        max_sessions: 8,
    })
    .expect("edge starts");

    let site = chromium::static_site(PAGE);
    let browser = Chromium::start();
    let pages = [browser.page(&site), browser.page(&site)];
    for (page, ep) in pages.iter().zip(["a", "b"]) {
        let ssrcs = page.eval("bf.start()");
        let (audio, video) = (ssrcs["audio"].as_u64(), ssrcs["video"].as_u64());
        let (Some(audio), Some(video)) = (audio, video) else {
            panic!("the offer names both sending SSRCs: {ssrcs}");
        };
        api.tracks(
            "c1",
            ep,
            vec![
                track("mic", TrackKind::Audio, &[audio as u32]),
                track("cam", TrackKind::Video, &[video as u32]),
            ],
        );
    }
    api.subscribe("c1", "a", &[("b", "mic"), ("b", "cam")]);
    api.subscribe("c1", "b", &[("a", "mic"), ("a", "cam")]);
    let edge_addr = edge.local_addr().to_string();
    for (page, c) in pages.iter().zip(&creds) {
        assert_eq!(
            page.eval(&connect_js(&edge_addr, c, fwd.media_addr())),
            json!(true)
        );
    }
    for (page, name) in pages.iter().zip(["a", "b"]) {
        let ok = page.wait_for(
            "bf.stats().then(s => s.video >= 30 && s.audio >= 50)",
            Duration::from_secs(40),
        );
        assert!(
            ok,
            "browser {name} decodes the other's video and receives its audio: {} (edge: {})",
            page.eval("bf.stats()"),
            edge.metrics().render()
        );
    }
    let m = edge.metrics();
    use std::sync::atomic::Ordering::Relaxed;
    assert!(m.to_forwarder.load(Relaxed) > 0 && m.to_browser.load(Relaxed) > 0);
    drop(pages);
    drop(browser);
    edge.stop();
    fwd.stop();
}
