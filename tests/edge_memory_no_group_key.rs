//! Mid-call, the edge process's memory holds no group key: two headless Chromium pages
//! in an SFrame call through a real `blindfold edge` child process decode each other; the
//! edge's whole writable memory is then scanned for the epoch secret and both senders'
//! SFrame base keys, and none is there. The control: the same scan over the browser's
//! renderer processes (where the pages' SFrame worker runs) finds the epoch secret, so the
//! scan is one that can fail. (The browser keeps the base keys only transiently, inside
//! WebCrypto; the epoch secret it holds for the whole epoch.)

mod common;

use std::time::Duration;

use blindfold::control::TrackKind;
use blindfold::e2ee::{EpochId, SframeBaseKey};
use common::chromium::{self, Chromium, Page};
use common::edge::EdgeProcess;
use common::memscan::{cmdline_contains, find_in_process, process_tree};
use common::{Api, Creds, track};
use serde_json::json;

const PAGE: &str = include_str!("pages/sframe_probe.html");
const SFRAME_JS: &str = include_str!("../crates/blindfold-signal/web/sframe.js");
const WORKER_JS: &str = include_str!("../crates/blindfold-signal/web/sframe-worker.js");

#[test]
fn the_edge_holds_no_group_key_the_browsers_do() {
    assert!(
        chromium::available(),
        "this test needs Debian's `chromium` (.ci/run installs it)"
    );
    let fwd = common::forwarder(1);
    let api = Api::new(fwd.control_addr());
    api.conference("c1");
    let names = ["a", "b"];
    let creds: Vec<Creds> = names.iter().map(|e| api.endpoint("c1", e)).collect();
    let edge = EdgeProcess::start(fwd.media_addr());
    let site = chromium::static_files(vec![
        ("/", "text/html; charset=utf-8", PAGE),
        ("/sframe.js", "text/javascript", SFRAME_JS),
        ("/sframe-worker.js", "text/javascript", WORKER_JS),
    ]);
    let browser = Chromium::start();
    let pages: Vec<Page<'_>> = names.iter().map(|_| browser.page(&site)).collect();

    let secret: [u8; 32] = rand::random();
    let epoch = EpochId::new(3, 0);
    let e = u32::from_be_bytes(epoch.to_bytes());
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
        page.eval(&format!(
            "bf.epoch({e}, '{}', {leaf}, true)",
            hex::encode(secret)
        ));
    }
    api.subscribe("c1", "a", &[("b", "mic"), ("b", "cam")]);
    api.subscribe("c1", "b", &[("a", "mic"), ("a", "cam")]);
    let media = fwd.media_addr();
    for (page, c) in pages.iter().zip(&creds) {
        let ice = json!({"ufrag": c.ufrag, "pwd": c.pwd});
        let cands = json!([{"ip": media.ip().to_string(), "port": media.port()}]);
        let js = format!("bf.connect('http://{}', {ice}, {cands})", edge.http);
        assert_eq!(page.eval(&js), json!(true));
    }
    for (page, name) in pages.iter().zip(names) {
        assert!(
            page.wait_for(
                "bf.stats().then(s => s.video >= 30 && s.decrypted >= 100 && s.failed === 0)",
                Duration::from_secs(40)
            ),
            "member {name} decodes the other (the call is live): {}",
            page.eval("bf.stats()")
        );
    }

    let base0 = SframeBaseKey::derive(&secret, epoch, 0);
    let base1 = SframeBaseKey::derive(&secret, epoch, 1);
    let needles: [&[u8]; 3] = [&secret, base0.as_bytes(), base1.as_bytes()];
    let in_edge = find_in_process(edge.child.id(), &needles);
    assert_eq!(
        in_edge,
        vec![false; 3],
        "the edge's memory holds [epoch secret, base key 0, base key 1]"
    );
    // The control: the participants (the browser's processes) hold the same keys.
    let mut in_browser = vec![false; 3];
    for pid in process_tree(browser.pid())
        .into_iter()
        .filter(|p| cmdline_contains(*p, "--type=renderer"))
    {
        for (seen, now) in in_browser.iter_mut().zip(find_in_process(pid, &needles)) {
            *seen |= now;
        }
    }
    assert!(
        in_browser[0],
        "the same scan finds the epoch secret in the browser: {in_browser:?}"
    );
    drop(pages);
    drop(browser);
    drop(edge);
    fwd.stop();
}
