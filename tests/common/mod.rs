//! Shared helpers for the integration tests: an in-process forwarder on loopback port 0,
//! a control-API client, and UDP peers that latch with STUN and wait on conditions with
//! deadlines (never fixed sleeps).
#![allow(dead_code)]

pub mod burst;
pub mod child;
pub mod chromium;
pub mod edge;
pub mod memscan;
pub mod metadata;
pub mod redis;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use blindfold::control::blocking;
use blindfold::control::{ConferenceList, ConferenceState, SubscriptionJson, TrackJson, TrackKind};
use blindfold::forwarder::Forwarder;
use blindfold::forwarder::config::ServeArgs;
use blindfold::proto::stun as ice;

pub mod control;
pub mod signal;
pub mod slow_forwarder;

pub const TOKEN: &str = "test-token";
/// Generous: CI is a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A forwarder running in this process on 127.0.0.1 with `shards` shards.
pub fn forwarder(shards: usize) -> Forwarder {
    let cfg = ServeArgs {
        media: "127.0.0.1:0".parse().unwrap(),
        control: "127.0.0.1:0".parse().unwrap(),
        shards: Some(shards),
        pin: false,
        socket_buffer: 1 << 20,
        control_token: Some(TOKEN.into()),
        ..Default::default()
    };
    Forwarder::start(cfg).expect("forwarder starts")
}

/// The typed control-API client (blocking), with assertions for the happy paths tests
/// set up calls with.
pub struct Api {
    client: blocking::Client,
}

impl Api {
    pub fn new(control: SocketAddr) -> Self {
        let client =
            blocking::Client::with_timeout(&format!("http://{control}"), Some(TOKEN), DEADLINE)
                .expect("control client");
        Self { client }
    }

    /// The client itself, for calls whose errors a test inspects.
    pub fn client(&self) -> &blocking::Client {
        &self.client
    }

    pub fn metrics(&self) -> String {
        self.client.metrics().expect("metrics answer")
    }

    /// Sum of a counter over all shards (and any other labels matching `label`).
    pub fn counter(&self, name: &str, label: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    pub fn conference(&self, id: &str) {
        self.client
            .create_conference(Some(id))
            .expect("create conference");
    }

    /// The conference's state as the API reports it.
    pub fn get(&self, conf: &str) -> ConferenceState {
        self.client.conference(conf).expect("get conference")
    }

    /// Every conference.
    pub fn list(&self) -> ConferenceList {
        self.client.list_conferences().expect("list conferences")
    }

    /// Creates an endpoint; returns its ICE credentials.
    pub fn endpoint(&self, conf: &str, id: &str) -> Creds {
        let created = self
            .client
            .create_endpoint(conf, Some(id))
            .expect("create endpoint");
        Creds {
            ufrag: created.ice.ufrag,
            pwd: created.ice.pwd,
        }
    }

    pub fn tracks(&self, conf: &str, ep: &str, tracks: Vec<TrackJson>) {
        self.client
            .set_tracks(conf, ep, tracks)
            .expect("set tracks");
    }

    pub fn subscribe(&self, conf: &str, ep: &str, subs: &[(&str, &str)]) {
        let subs = subs
            .iter()
            .map(|(e, t)| SubscriptionJson::new(*e, *t))
            .collect();
        self.client
            .set_subscriptions(conf, ep, subs)
            .expect("set subscriptions");
    }

    pub fn delete_endpoint(&self, conf: &str, ep: &str) {
        self.client
            .delete_endpoint(conf, ep)
            .expect("delete endpoint");
    }
}

/// A track `id` of `kind` with SSRCs `ssrcs`.
pub fn track(id: &str, kind: TrackKind, ssrcs: &[u32]) -> TrackJson {
    TrackJson::new(id, kind, ssrcs.to_vec())
}

#[derive(Clone, Debug)]
pub struct Creds {
    pub ufrag: String,
    pub pwd: String,
}

/// A participant's UDP socket on loopback.
pub struct Peer {
    pub sock: UdpSocket,
    pub media: SocketAddr,
}

impl Peer {
    pub fn new(media: SocketAddr) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Self { sock, media }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Latches with a STUN Binding request, retrying until the verified response
    /// arrives; returns the XOR-MAPPED-ADDRESS.
    pub fn latch(&self, creds: &Creds) -> SocketAddr {
        self.try_latch(creds, DEADLINE)
            .expect("STUN latch answered")
    }

    /// Like [`Peer::latch`] but gives up after `wait`. Answers the forwarder's
    /// return-path check on the way: the forwarder sends it just before its answer to a
    /// check from an address it has not proven yet, so once the answer is in, the check
    /// (if any) has been answered.
    pub fn try_latch(&self, creds: &Creds, wait: Duration) -> Option<SocketAddr> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let txid: [u8; 12] = rand::random();
            let req = ice::binding_request(txid, &creds.ufrag, "client", creds.pwd.as_bytes());
            self.sock.send_to(&req, self.media).unwrap();
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                let Some((pkt, from)) = self.recv_once() else {
                    continue;
                };
                if from != self.media {
                    continue;
                }
                if let Some(answer) = self.answer(&pkt, creds) {
                    self.sock.send_to(&answer, from).unwrap();
                } else if let Ok(a) = ice::parse_binding_success(&pkt, &txid, creds.pwd.as_bytes())
                {
                    return Some(a);
                }
            }
        }
        None
    }

    /// This participant's answer to the forwarder's return-path check `pkt`, if it is one
    /// for `creds`.
    pub fn answer(&self, pkt: &[u8], creds: &Creds) -> Option<Vec<u8>> {
        ice::answer_check(
            pkt,
            self.media,
            &creds.ufrag,
            "client",
            creds.pwd.as_bytes(),
        )
    }

    pub fn send(&self, pkt: &[u8]) {
        self.sock.send_to(pkt, self.media).unwrap();
    }

    fn recv_once(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => Some((buf[..n].to_vec(), from)),
            Err(_) => None,
        }
    }

    /// Waits until a datagram satisfying `want` arrives; returns it and its source.
    /// Other datagrams are collected into `others`.
    pub fn recv_until(
        &self,
        want: impl Fn(&[u8]) -> bool,
        others: &mut Vec<Vec<u8>>,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Some((p, from)) = self.recv_once() {
                if want(&p) {
                    return Some((p, from));
                }
                others.push(p);
            }
        }
        None
    }

    /// Everything already queued on the socket, without waiting past a short poll.
    pub fn drain(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some((p, _)) = self.recv_once() {
            v.push(p);
        }
        v
    }
}

/// An RTP packet with `ssrc`, sequence `seq` and a payload that encodes both.
pub fn rtp(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// The (ssrc, seq) of an RTP packet.
pub fn rtp_id(p: &[u8]) -> Option<(u32, u16)> {
    if p.len() < 12 || p[0] >> 6 != 2 || (192..=223).contains(&p[1]) {
        return None;
    }
    Some((
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Waits until `cond` holds or the deadline passes.
pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Sends `sig` (for example `-STOP`, `-CONT`, `-KILL`) to process `pid` with kill(1).
pub fn send_signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// Waits until `cond` holds; fails the test naming `what` once `within` has passed.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A conference "c1" on `fwd`: endpoint "a" publishes track "mic" (SSRC 0xA1) and
/// "cam" (SSRC 0xA2); "b" and "c" subscribe to both; "d" subscribes to nothing and
/// publishes "mic" (SSRC 0xD1), to which "a" subscribes. All four are latched by STUN.
pub struct Call {
    pub api: Api,
    pub creds: Vec<Creds>,
    pub peers: Vec<Peer>,
}

pub const NAMES: [&str; 4] = ["a", "b", "c", "d"];

impl Call {
    pub fn new(fwd: &Forwarder) -> Self {
        Self::on(fwd.media_addr(), fwd.control_addr())
    }

    /// The same call on a forwarder reached by its addresses (e.g. a child process).
    pub fn on(media: SocketAddr, control: SocketAddr) -> Self {
        let api = Api::new(control);
        api.conference("c1");
        let creds: Vec<Creds> = NAMES.iter().map(|n| api.endpoint("c1", n)).collect();
        api.tracks(
            "c1",
            "a",
            vec![
                track("mic", TrackKind::Audio, &[0xA1]),
                track("cam", TrackKind::Video, &[0xA2]),
            ],
        );
        api.tracks("c1", "d", vec![track("mic", TrackKind::Audio, &[0xD1])]);
        for s in ["b", "c"] {
            api.subscribe("c1", s, &[("a", "mic"), ("a", "cam")]);
        }
        api.subscribe("c1", "a", &[("d", "mic")]);
        let peers: Vec<Peer> = NAMES.iter().map(|_| Peer::new(media)).collect();
        for (p, c) in peers.iter().zip(&creds) {
            let mapped = p.latch(c);
            assert_eq!(mapped, p.addr(), "XOR-MAPPED-ADDRESS is the peer's address");
        }
        // Latches reach every shard through the control thread; wait until the API
        // reports all four latched, so no test races the propagation.
        assert!(
            wait_for(|| api.get("c1").all_latched(4)),
            "all endpoints latched"
        );
        Self { api, creds, peers }
    }

    pub fn peer(&self, name: &str) -> &Peer {
        &self.peers[NAMES.iter().position(|n| *n == name).unwrap()]
    }
}

/// Runs `f` against a forwarder with one shard and with three.
pub fn with_shard_counts(f: impl Fn(&Forwarder)) {
    for shards in [1, 3] {
        let fwd = forwarder(shards);
        f(&fwd);
        fwd.stop();
    }
}

/// `blindfold serve` running as a real child process on loopback port 0; killed on drop.
/// Its stderr (the logs) is kept in a file for audits.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub media: SocketAddr,
    pub control: SocketAddr,
    pub log_path: std::path::PathBuf,
}

impl ServeProcess {
    pub fn start(shards: usize, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let log_path = std::env::temp_dir().join(format!(
            "blindfold-serve-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_blindfold"))
            .args([
                "serve",
                "--media",
                "127.0.0.1:0",
                "--control",
                "127.0.0.1:0",
            ])
            .args(["--shards", &shards.to_string(), "--pin", "false"])
            .args(["--control-token", TOKEN])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut media = None;
        let mut control = None;
        let deadline = Instant::now() + DEADLINE;
        while (media.is_none() || control.is_none()) && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if let Some(a) = line.strip_prefix("media ") {
                    media = a.trim().parse().ok();
                } else if let Some(a) = line.strip_prefix("control http://") {
                    control = a.trim().parse().ok();
                }
            }
        }
        let (Some(media), Some(control)) = (media, control) else {
            let _ = child.kill();
            panic!("serve did not report its addresses");
        };
        Self {
            child,
            media,
            control,
            log_path,
        }
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}
