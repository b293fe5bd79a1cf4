//! Helpers for tests of the signalling service as a real process: `blindfold signal` as a
//! child (limits given through its environment variables, so the same test runs against
//! a build that lacks them), a minimal blocking WebSocket client that can misbehave
//! (never read, declare huge frames, come from 127.0.0.2), and the process's memory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{DEADLINE, TOKEN};

/// `blindfold signal` on 127.0.0.1 port 0, driving the forwarder at `control`; killed on
/// drop.
pub struct SignalProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl SignalProcess {
    pub fn start(control: SocketAddr, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_blindfold"))
            .args(["signal", "--listen", "127.0.0.1:0"])
            .args(["--forwarder", &format!("http://{control}")])
            .args(["--control-token", TOKEN])
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("signal starts");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let ws = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("signal did not print its address");
            };
            if let Some(rest) = line.strip_prefix("signal ") {
                break rest.trim().to_string();
            }
        };
        let addr = ws
            .trim_start_matches("ws://")
            .trim_end_matches("/v1/ws")
            .parse()
            .expect("signal address");
        Self { child, addr }
    }

    /// `GET /metrics` (start it with `BLINDFOLD_SIGNAL_METRICS=1`), and the value of
    /// the line starting with `series`.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(DEADLINE)).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Resident set size, KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// Peak resident set size, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }
}

impl Drop for SignalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A 32-hex-digit ephemeral id made of `n`.
pub fn eid(n: u64) -> String {
    format!("{n:032x}")
}

/// The call secret a test uses for the conference it names `name` (any string).
pub fn test_call(name: &str) -> blindfold::e2ee::CallSecret {
    let mut b = [0u8; 32];
    for (i, c) in name.bytes().enumerate() {
        b[i % 32] ^= c.wrapping_add(i as u8);
    }
    blindfold::e2ee::CallSecret::from_bytes(b)
}

/// The ephemeral conference id of the conference a test names `name`.
pub fn conference_id(name: &str) -> String {
    test_call(name).conference_id().to_hex()
}

/// A join message for this connection's `challenge`: with `proof` a valid proof under the
/// named conference's join key (which it also offers, for the first joiner), without it a
/// proof that does not verify. The KeyPackage is a placeholder: the service relays it
/// unread.
pub fn join(challenge: &[u8], conference: &str, participant: &str, proof: bool) -> String {
    use blindfold::signal::proto::join_proof;
    let call = test_call(conference);
    let conf = call.conference_id().to_hex();
    let key = call.join_key();
    let mac = if proof {
        join_proof(&key, challenge, &conf, participant).to_vec()
    } else {
        vec![0; 32]
    };
    json!({
        "v": 1, "type": "join", "conference": conf, "participant": participant,
        "proof": hex::encode(mac), "key_package": "00", "join_key": hex::encode(*key),
    })
    .to_string()
}

/// A handshake frame carrying an MLS proposal header for the named conference, padded to
/// about `len` octets (the service relays it to every other member without reading more).
pub fn proposal(conference: &str, len: usize) -> String {
    let conf = hex::decode(conference_id(conference)).unwrap();
    let mut m = vec![0, 1, 0, 2, conf.len() as u8];
    m.extend_from_slice(&conf);
    m.extend_from_slice(&1u64.to_be_bytes());
    m.push(2);
    m.resize(len.max(m.len()), 0xab);
    json!({"v": 1, "type": "handshake", "message": hex::encode(m)}).to_string()
}

/// A blocking WebSocket client speaking just enough RFC 6455 to misbehave.
#[derive(Debug)]
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The service's challenge for this connection, once read.
    challenge: Option<Vec<u8>>,
}

/// How a connection attempt ended.
#[derive(Debug)]
pub enum Upgrade {
    /// 101: a WebSocket.
    Open(RawWs),
    /// An HTTP answer other than 101, with its status and body.
    Refused(u16, String),
    /// Closed or reset without an answer.
    Dropped,
}

impl RawWs {
    /// Connects from `from` (any 127.0.0.0/8 address) with the given receive buffer.
    pub fn connect(to: SocketAddr, from: IpAddr, rcvbuf: Option<usize>) -> Upgrade {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        if let Some(n) = rcvbuf {
            s.set_recv_buffer_size(n).unwrap();
        }
        s.bind(&SocketAddr::new(from, 0).into()).unwrap();
        if s.connect(&to.into()).is_err() {
            return Upgrade::Dropped;
        }
        let mut stream: TcpStream = s.into();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        if stream.write_all(req.as_bytes()).is_err() {
            return Upgrade::Dropped;
        }
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return Upgrade::Dropped,
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 101 {
            return Upgrade::Open(RawWs {
                stream,
                buf: Vec::new(),
                challenge: None,
            });
        }
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        Upgrade::Refused(status, body)
    }

    /// Connects from 127.0.0.1 and expects the upgrade.
    pub fn open(to: SocketAddr) -> RawWs {
        match Self::connect(to, IpAddr::from([127, 0, 0, 1]), None) {
            Upgrade::Open(ws) => ws,
            other => panic!("no WebSocket: {other:?}"),
        }
    }

    /// The header of a masked client frame with `len` payload octets.
    pub fn frame_header(opcode: u8, len: usize) -> Vec<u8> {
        let mut h = vec![0x80 | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= 0xffff {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // A zero mask key: masking is then the identity.
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    }

    pub fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        write_text(&mut self.stream, text)
    }

    /// Another handle on the same socket, for writing from another thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().unwrap()
    }

    /// The next text message other than the challenge (kept for [`RawWs::join_text`]), or
    /// `None` on close, error or timeout.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some((text, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                match text.and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
                    Some(m) if m["type"] == "challenge" => {
                        self.challenge = m["nonce"].as_str().and_then(|n| hex::decode(n).ok());
                        continue;
                    }
                    Some(m) => return Some(m),
                    None => continue,
                }
            }

            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until a message of `type` arrives (others are skipped).
    pub fn recv_type(&mut self, ty: &str) -> Option<Value> {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            let m = self.recv()?;
            if m["type"] == ty {
                return Some(m);
            }
        }
        None
    }

    /// This connection's challenge (reads frames until it has come).
    pub fn challenge(&mut self) -> Vec<u8> {
        while self.challenge.is_none() {
            let mut chunk = [0u8; 4096];
            if let Some((text, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                if let Some(m) = text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    && m["type"] == "challenge"
                {
                    self.challenge = m["nonce"].as_str().and_then(|n| hex::decode(n).ok());
                }
                continue;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => panic!("no challenge from the service"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
        self.challenge.clone().unwrap_or_default()
    }

    /// A join frame answering this connection's challenge (see [`join`]).
    pub fn join_text(&mut self, conference: &str, participant: &str, proof: bool) -> String {
        let c = self.challenge();
        join(&c, conference, participant, proof)
    }

    /// Joins and returns `joined`, or panics with what came instead.
    pub fn join(&mut self, conference: &str, participant: &str, proof: bool) -> Value {
        let text = self.join_text(conference, participant, proof);
        self.send_text(&text).unwrap();
        let m = self.recv().expect("an answer to join");
        assert_eq!(m["type"], "joined", "{m}");
        m
    }

    /// Whether the server closed the connection within `wait` (reads and drops anything
    /// it still sends).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut chunk = [0u8; 16 * 1024];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// Writes one masked text frame.
pub fn write_text(stream: &mut impl Write, text: &str) -> std::io::Result<()> {
    let mut f = RawWs::frame_header(0x1, text.len());
    f.extend_from_slice(text.as_bytes());
    stream.write_all(&f)
}

/// One complete server frame at the start of `buf`: `(Some(text) | None for non-text,
/// octets used)`.
fn parse_frame(buf: &[u8]) -> Option<(Option<String>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < at + len {
        return None;
    }
    let payload = &buf[at..at + len];
    let text = (opcode == 0x1).then(|| String::from_utf8_lossy(payload).into_owned());
    Some((text, at + len))
}
