//! SFrame end to end through the edge, in real browsers: three headless Chromium pages run
//! the web client's SFrame transform worker on every sender and receiver. Two hold the
//! same epoch secret and decode each other's video and audio with no decryption failure,
//! and keep decoding when both move to the next ratchet step; the third holds another
//! secret: it receives their frames and decodes none. The edge and the forwarder carry
//! only ciphertext (the edge has no key to offer the third page).

mod common;

use std::time::Duration;

use blindfold::control::TrackKind;
use blindfold::e2ee::EpochId;
use blindfold::edge::{EdgeArgs, EdgeServer};
use common::chromium::{self, Chromium, Page};
use common::{Api, Creds, track};
use serde_json::{Value, json};

const PAGE: &str = include_str!("pages/sframe_probe.html");
const SFRAME_JS: &str = include_str!("../crates/blindfold-signal/web/sframe.js");
const WORKER_JS: &str = include_str!("../crates/blindfold-signal/web/sframe-worker.js");

fn connect_js(edge: &str, creds: &Creds, media: std::net::SocketAddr) -> String {
    let ice = json!({"ufrag": creds.ufrag, "pwd": creds.pwd});
    let cands = json!([{"ip": media.ip().to_string(), "port": media.port()}]);
    format!("bf.connect('http://{edge}', {ice}, {cands})")
}

fn epoch_u32(e: EpochId) -> u32 {
    u32::from_be_bytes(e.to_bytes())
}

fn stats(p: &Page<'_>) -> Value {
    p.eval("bf.stats()")
}

#[test]
fn members_decode_each_other_and_a_wrong_secret_decodes_nothing() {
    assert!(
        chromium::available(),
        "this test needs Debian's `chromium` (.ci/run installs it)"
    );
    let fwd = common::forwarder(1);
    let api = Api::new(fwd.control_addr());
    api.conference("c1");
    let names = ["a", "b", "c"];
    let creds: Vec<Creds> = names.iter().map(|e| api.endpoint("c1", e)).collect();
    let edge = EdgeServer::start(&EdgeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        forwarders: vec![fwd.media_addr()],
        max_sessions: 8,
    })
    .expect("edge starts");
    let site = chromium::static_files(vec![
        ("/", "text/html; charset=utf-8", PAGE),
        ("/sframe.js", "text/javascript", SFRAME_JS),
        ("/sframe-worker.js", "text/javascript", WORKER_JS),
    ]);
    let browser = Chromium::start();
    let pages: Vec<Page<'_>> = names.iter().map(|_| browser.page(&site)).collect();

    let secret = hex::encode(rand::random::<[u8; 32]>());
    let wrong = hex::encode(rand::random::<[u8; 32]>());
    let e1 = epoch_u32(EpochId::new(1, 0));
    for (leaf, (page, ep)) in pages.iter().zip(names).enumerate() {
        let ssrcs = page.eval("bf.start()");
        let (Some(audio), Some(video)) = (ssrcs["audio"].as_u64(), ssrcs["video"].as_u64()) else {
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
        let s = if ep == "c" { &wrong } else { &secret };
        assert_eq!(
            page.eval(&format!("bf.epoch({e1}, '{s}', {leaf}, true)")),
            json!(true)
        );
    }
    // a and b see each other; c (the stranger) sees both, nobody sees c.
    api.subscribe("c1", "a", &[("b", "mic"), ("b", "cam")]);
    api.subscribe("c1", "b", &[("a", "mic"), ("a", "cam")]);
    api.subscribe(
        "c1",
        "c",
        &[("a", "mic"), ("a", "cam"), ("b", "mic"), ("b", "cam")],
    );
    let edge_addr = edge.local_addr().to_string();
    for (page, c) in pages.iter().zip(&creds) {
        assert_eq!(
            page.eval(&connect_js(&edge_addr, c, fwd.media_addr())),
            json!(true)
        );
    }

    let decodes = "bf.stats().then(s => s.video >= 30 && s.audio >= 50 && s.decrypted >= 100)";
    for (page, name) in pages[..2].iter().zip(names) {
        assert!(
            page.wait_for(decodes, Duration::from_secs(40)),
            "member {name} decodes the other member: {}",
            stats(page)
        );
    }
    // The stranger has received plenty of ciphertext by now and opened none of it.
    let c = &pages[2];
    assert!(
        c.wait_for(
            "bf.stats().then(s => s.failed >= 100)",
            Duration::from_secs(20)
        ),
        "the stranger receives the members' frames: {}",
        stats(c)
    );
    let cs = stats(c);
    assert_eq!(
        cs["decrypted"],
        json!(0),
        "the stranger opens nothing: {cs}"
    );
    assert_eq!(cs["video"], json!(0), "the stranger decodes no video: {cs}");

    // Both members ratchet to step 1 and send under it: decoding goes on, under the new
    // epoch, with no failure at any point.
    let e2 = epoch_u32(EpochId::new(1, 1));
    let before: Vec<u64> = pages[..2]
        .iter()
        .map(|p| stats(p)["video"].as_u64().unwrap())
        .collect();
    for (leaf, page) in pages[..2].iter().enumerate() {
        page.eval(&format!("bf.epoch({e2}, '{secret}', {leaf}, true)"));
    }
    for ((page, name), b) in pages[..2].iter().zip(names).zip(before) {
        let rotated = format!(
            "bf.stats().then(s => s.lastRecvEpoch === {e2} && s.sendEpoch === {e2} && s.video >= {})",
            b + 30
        );
        assert!(
            page.wait_for(&rotated, Duration::from_secs(30)),
            "member {name} decodes under the new step: {}",
            stats(page)
        );
        let s = stats(page);
        assert_eq!(
            s["failed"],
            json!(0),
            "member {name}: no decryption failure: {s}"
        );
        assert_eq!(
            s["noKey"],
            json!(0),
            "member {name}: never without a key: {s}"
        );
    }
    // The page's state line follows the worker: "encrypted" once frames open.
    assert!(
        pages[0].wait_for(
            "document.getElementById('state').textContent === 'encrypted'",
            Duration::from_secs(10)
        ),
        "the page shows the encrypted state"
    );
    // `BLINDFOLD_SCREENSHOT=docs/web-sframe-call.png` keeps a picture of member a's page.
    if let Ok(path) = std::env::var("BLINDFOLD_SCREENSHOT") {
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(pages[0].screenshot_base64())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
    drop(pages);
    drop(browser);
    edge.stop();
    fwd.stop();
}
