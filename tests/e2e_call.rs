//! End to end with the real binaries: `blindfold serve` and `blindfold signal` as child
//! processes on loopback (port 0, addresses read from their stdout), four participants in
//! this process against them, and a `blindfold client` child joining late.
//!
//! Asserts the properties: all media decrypts at every present member; after a
//! leave the leaver gets nothing sent after it, and cannot decrypt packets sent after the
//! rekey; a late joiner cannot decrypt a recording from before its join; the committer
//! leaving does not interrupt media beyond the grace window; the service's and forwarder's
//! views hold no long-lived id. Bounded in time; every child is killed on every path.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use blindfold::client::{Identity, Participant, ParticipantConfig, Stats};
use blindfold::demo::checks::{self, Timeline};

const TOKEN: &str = "e2e-token";
const DEADLINE: Duration = Duration::from_secs(20);

/// A child process killed (and reaped) when dropped, whatever the test's outcome.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_blindfold"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn blindfold");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The rest of the first stdout line starting with `prefix`, waiting up to DEADLINE.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("timed out waiting for stdout");
            let line = self
                .lines
                .recv_timeout(left)
                .expect("child printed the line");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DEADLINE))
        .build()
        .into();
    let mut r = agent
        .get(url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .expect("HTTP answer");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

#[test]
fn encrypted_call_through_real_serve_and_signal() {
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
    let _media = serve.line("media ");
    let control = serve.line("control ");
    let signal = Proc::spawn(&[
        "signal",
        "--listen",
        "127.0.0.1:0",
        "--forwarder",
        &control,
        "--control-token",
        TOKEN,
        "--debug-state",
    ]);
    let ws = signal.line("signal ");
    let signal_http = ws.replace("ws://", "http://").replace("/v1/ws", "");

    let mut call_secret = [0u8; 32];
    rand::fill(&mut call_secret);
    let identities: Vec<Identity> = (0..4)
        .map(|i| Identity::generate(&format!("person{i}@example.org"), "e2e-laptop"))
        .collect();
    let config = |i: usize| {
        let mut c = ParticipantConfig::new(&ws, call_secret, identities[i].clone());
        c.schedule.epoch_interval_ms = 2_000;
        if i == 1 {
            c.record = 100_000;
        }
        // The leavers play the attacker that keeps its keys (the probes' strongest case).
        c.keep_keys_after_leave = i == 0 || i == 2;
        c
    };
    let (keygen, recorder, leaver, joiner) = (0, 1, 2, 3);
    let start = Instant::now();
    let mut ps: Vec<Participant> = Vec::new();
    for i in 0..3 {
        let p = Participant::spawn(config(i)).unwrap();
        p.wait_ready(DEADLINE).expect("participant ready");
        ps.push(p);
    }
    sleep_until(start + Duration::from_secs(2));
    let before_join = Instant::now();
    let p = Participant::spawn(config(joiner)).unwrap();
    p.wait_ready(DEADLINE).expect("late joiner ready");
    let ready = Instant::now();
    ps.push(p);
    assert!(ps[recorder].wait_stats(DEADLINE, |s| s.decrypted > 0));
    std::thread::sleep(Duration::from_millis(500));
    let joiner_check = checks::joiner_check(&ps, recorder, joiner, before_join, ready);

    sleep_until(start + Duration::from_secs(4));
    let leaver_left = ps[leaver].leave(DEADLINE).expect("leave completes");
    sleep_until(start + Duration::from_secs(6));
    let keygen_left = ps[keygen].leave(DEADLINE).expect("the committer leaves");

    // The CLI participant joins after both leaves and reports its counters as JSON.
    let secret_hex = hex::encode(call_secret);
    let mut cli = Proc::spawn(&[
        "client",
        "--signal",
        &ws,
        "--call-secret",
        &secret_hex,
        "--user",
        "cli-user@example.org",
        "--device",
        "cli-device",
        "--duration",
        "3",
        "--epoch-interval",
        "2",
    ]);
    let cli_id = cli.line("joined ");

    // The service's and the forwarder's views, while the call runs.
    let (status, state) = get(&format!("{signal_http}/v1/state"));
    assert_eq!(status, 200, "{state}");
    let conf = ps[recorder].conference().to_hex();
    let (status, fwd_view) = get(&format!("{control}/v1/conferences/{conf}"));
    assert_eq!(status, 200, "{fwd_view}");
    for view in [&state, &fwd_view] {
        for id in &identities {
            assert!(
                !view.contains(&id.user) && !view.contains(&id.device),
                "{view}"
            );
            assert!(!view.contains(&hex::encode(id.long_term_key)));
        }
        assert!(!view.contains("example.org") && !view.contains("cli-device"));
        assert!(!view.contains(&secret_hex));
        for p in [recorder, joiner] {
            assert!(view.contains(&ps[p].id().to_hex()), "present member listed");
        }
        for p in [leaver, keygen] {
            assert!(!view.contains(&ps[p].id().to_hex()), "leaver gone");
        }
        assert!(view.contains(&cli_id));
    }

    let status = cli.wait_exit(DEADLINE).expect("client exits in time");
    let json = cli.line("{");
    let cli_stats: Stats = serde_json::from_str(&format!("{{{json}")).expect("client stats JSON");
    assert!(status.success(), "client failed: {cli_stats:?}");
    assert!(
        cli_stats.decrypted > 50 && cli_stats.failed == 0,
        "{cli_stats:?}"
    );
    assert!(cli_stats.sent > 50);

    let timeline = Timeline {
        before_join,
        joiner,
        leaves: vec![(leaver, leaver_left), (keygen, keygen_left)],
        recorder,
        grace_ms: config(0).schedule.grace_ms,
        joiner_check,
    };
    let results = checks::run_all(&ps, &timeline);
    let report: Vec<String> = results
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
    assert!(results.iter().all(|c| c.passed), "{}", report.join("\n"));
    assert!(results.len() >= 10);

    let (_, metrics) = get(&format!("{control}/metrics"));
    let counters = blindfold::demo::ForwarderCounters::from_prometheus(&metrics);
    assert!(
        counters.rtp_forwarded > 500 && counters.tx_packets > counters.rtp_forwarded,
        "{counters:?}"
    );
    for p in ps {
        let (_, err) = p.stop();
        assert!(err.is_none(), "{err:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(60));
}
