//! Metadata hygiene: after a call, everything the forwarder and the signalling service
//! wrote (their logs at info level, their stdout, the forwarder's metrics) is searched for
//! the participants' ids, their long-lived identities and their addresses. None appears:
//! the only socket addresses mentioned are the servers' own listening addresses.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blindfold::client::{Identity, Participant, ParticipantConfig};

struct Server {
    child: Child,
    stdout: std::sync::mpsc::Receiver<String>,
    log: std::path::PathBuf,
}

impl Server {
    fn spawn(args: &[&str], name: &str) -> Self {
        let log =
            std::env::temp_dir().join(format!("blindfold-audit-{name}-{}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_blindfold"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("BLINDFOLD_CONTROL_TOKEN", common::TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self { child, stdout, log }
    }

    /// Waits for a stdout line starting with `prefix`; keeps every line for the audit.
    fn line(&self, prefix: &str, seen: &mut Vec<String>) -> String {
        let deadline = Instant::now() + common::DEADLINE;
        while Instant::now() < deadline {
            if let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(100)) {
                seen.push(l.clone());
                if let Some(rest) = l.strip_prefix(prefix) {
                    return rest.trim().to_string();
                }
            }
        }
        panic!("no {prefix:?} line on stdout");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Every `a.b.c.d:port` in `text`.
fn socket_addrs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b':')
            {
                i += 1;
            }
            let cand = &text[start..i];
            if cand.parse::<std::net::SocketAddr>().is_ok() {
                out.push(cand.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn logs_and_metrics_carry_no_participant_address_or_id() {
    let mut stdout_seen = Vec::new();
    let serve = Server::spawn(
        &[
            "serve",
            "--media",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ],
        "serve",
    );
    // The token comes from the environment here, so no command line carries it either.
    let media = serve.line("media ", &mut stdout_seen);
    let control = serve.line("control ", &mut stdout_seen);
    let signal = Server::spawn(
        &["signal", "--listen", "127.0.0.1:0", "--forwarder", &control],
        "signal",
    );
    let ws = signal.line("signal ", &mut stdout_seen);

    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let users = [
        "audit-alice@example.org",
        "audit-bob@example.org",
        "audit-carol@example.org",
    ];
    let ps: Vec<Participant> = users
        .iter()
        .map(|u| {
            let p = Participant::spawn(ParticipantConfig::new(
                &ws,
                secret,
                Identity::generate(u, "audit-phone"),
            ))
            .unwrap();
            p.wait_ready(common::DEADLINE).expect("participant ready");
            p
        })
        .collect();
    for p in &ps {
        assert!(
            p.wait_stats(common::DEADLINE, |s| s.decrypted > 20),
            "media flows"
        );
    }
    let mut secrets: Vec<String> = ps.iter().map(|p| p.id().to_hex()).collect();
    secrets.push(ps[0].conference().to_hex());
    secrets.extend(users.iter().map(|u| u.to_string()));
    secrets.push("audit-phone".into());
    secrets.push(blindfold_token());
    let mut ps = ps;
    let leaver = ps.pop().unwrap();
    leaver.leave(common::DEADLINE).expect("leave completes");
    let metrics = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .get(format!("{control}/metrics"))
            .header("Authorization", format!("Bearer {}", blindfold_token()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    assert!(metrics.contains("blindfold_rtp_forwarded_total"));
    for p in ps {
        p.stop();
    }
    drop(leaver);
    let logs = format!(
        "{}\n{}",
        std::fs::read_to_string(&serve.log).unwrap(),
        std::fs::read_to_string(&signal.log).unwrap()
    );
    assert!(
        logs.contains("forwarder started") && logs.contains("participant"),
        "the logs were captured:\n{logs}"
    );
    let everything = format!("{logs}\n{metrics}\n{}", stdout_seen.join("\n"));

    for s in &secrets {
        assert!(
            !everything.contains(s.as_str()),
            "{s:?} appears in what the servers wrote"
        );
    }
    let own: Vec<String> = [
        media.clone(),
        control.trim_start_matches("http://").to_string(),
        ws.trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string(),
    ]
    .into_iter()
    .collect();
    for addr in socket_addrs(&everything) {
        assert!(
            own.contains(&addr),
            "a participant's address {addr} appears in what the servers wrote"
        );
    }
}

fn blindfold_token() -> String {
    common::TOKEN.to_string()
}
