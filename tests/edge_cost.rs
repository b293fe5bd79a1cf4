//! The edge's CPU cost per forwarded packet, measured on the real thing: two headless
//! Chromium pages in an SFrame call through a `blindfold edge` child process; over a
//! window of the call, the edge's CPU time (`/proc/PID/task/*/schedstat`) is divided by the RTP
//! packets it moved (both directions, from its `/metrics`). A measurement, not a gate:
//! `cargo test --release --test edge_cost -- --ignored --nocapture` prints the figure
//! the README records. It fails only if the call moved no media.

mod common;

use std::time::{Duration, Instant};

use blindfold::control::TrackKind;
use common::chromium::{self, Chromium, Page};
use common::edge::EdgeProcess;
use common::{Api, Creds, track};
use serde_json::json;

const PAGE: &str = include_str!("pages/sframe_probe.html");
const SFRAME_JS: &str = include_str!("../crates/blindfold-signal/web/sframe.js");
const WORKER_JS: &str = include_str!("../crates/blindfold-signal/web/sframe-worker.js");

/// CPU time of every thread of `pid` (the edge's runtime workers included), in ns.
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn packets(edge: &EdgeProcess) -> u64 {
    let text = ureq::get(&format!("http://{}/metrics", edge.http))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("blindfold_edge_packets_to_forwarder_total ")
                || l.starts_with("blindfold_edge_packets_to_browser_total ")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn edge_cpu_per_forwarded_packet() {
    assert!(chromium::available(), "needs Debian's `chromium`");
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
    let secret = hex::encode(rand::random::<[u8; 32]>());
    for (leaf, (page, ep)) in pages.iter().zip(names).enumerate() {
        let ssrcs = page.eval("bf.start()");
        let audio = ssrcs["audio"].as_u64().unwrap() as u32;
        let video = ssrcs["video"].as_u64().unwrap() as u32;
        api.tracks(
            "c1",
            ep,
            vec![
                track("mic", TrackKind::Audio, &[audio]),
                track("cam", TrackKind::Video, &[video]),
            ],
        );
        page.eval(&format!("bf.epoch(65536, '{secret}', {leaf}, true)"));
    }
    api.subscribe("c1", "a", &[("b", "mic"), ("b", "cam")]);
    api.subscribe("c1", "b", &[("a", "mic"), ("a", "cam")]);
    let media = fwd.media_addr();
    for (page, c) in pages.iter().zip(&creds) {
        let ice = json!({"ufrag": c.ufrag, "pwd": c.pwd});
        let cands = json!([{"ip": media.ip().to_string(), "port": media.port()}]);
        page.eval(&format!(
            "bf.connect('http://{}', {ice}, {cands})",
            edge.http
        ));
    }
    for page in &pages {
        assert!(page.wait_for(
            "bf.stats().then(s => s.video >= 60)",
            Duration::from_secs(40)
        ));
    }
    let pid = edge.child.id();
    let (c0, p0, t0) = (cpu_ns(pid), packets(&edge), Instant::now());
    std::thread::sleep(Duration::from_secs(20));
    let (c1, p1, secs) = (cpu_ns(pid), packets(&edge), t0.elapsed().as_secs_f64());
    let n = p1 - p0;
    assert!(n > 0, "the call moved media");
    let per = (c1 - c0) as f64 / n as f64;
    println!(
        "edge: {n} RTP packets in {secs:.1} s ({:.0}/s, 2 browsers, both directions), CPU {:.1} ms/s = {:.2} % of a core, {:.1} µs per forwarded packet",
        n as f64 / secs,
        (c1 - c0) as f64 / 1e6 / secs,
        (c1 - c0) as f64 / 1e7 / secs,
        per / 1e3
    );
    drop(pages);
    drop(browser);
    drop(edge);
    fwd.stop();
}
