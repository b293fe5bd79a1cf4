//! A real `redis-server` for the cluster tests: its own process on a unix socket in a
//! fresh temporary directory (never the system Redis on 6379), no persistence, waited for
//! with a deadline, killed when dropped. Plus a blocking handle on the cluster state for
//! tests that are not async.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blindfold::cluster::Cluster;

/// How long a starting redis-server may take on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// One redis-server process; killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    pub socket: PathBuf,
}

impl RedisServer {
    /// Starts a redis-server on a fresh unix socket and waits until it answers PING.
    pub fn start() -> Self {
        let mut s = Self::not_started();
        s.spawn();
        s
    }

    /// A fresh socket path where no Redis runs yet: [`RedisServer::spawn`] starts one.
    pub fn not_started() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "bf-redis-{}-{:x}",
            std::process::id(),
            super::rand_suffix() & 0xffff_ffff
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        Self {
            child: None,
            dir,
            socket,
        }
    }

    /// The URL `serve --redis` and [`Cluster::connect`] take.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// (Re)starts the server on the same socket, empty, and waits for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::File::create(self.dir.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", "0"])
            .arg("--unixsocket")
            .arg(&self.socket)
            .args(["--unixsocketperm", "700"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install the Debian package \
                     `redis-server` (.ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer within {START_DEADLINE:?}; its log:\n{}",
            std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
        );
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Whether a server answers PING on the socket.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking handle on the cluster state, with its own runtime.
pub struct ClusterClient {
    pub rt: tokio::runtime::Runtime,
    pub cluster: Cluster,
}

impl ClusterClient {
    pub fn new(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = {
            let _g = rt.enter();
            Cluster::connect(url).expect("valid URL")
        };
        Self { rt, cluster }
    }

    /// Runs a future on the handle's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The live nodes (empty when Redis cannot be reached).
    pub fn nodes(&self) -> Vec<blindfold::cluster::NodeInfo> {
        self.block_on(self.cluster.nodes()).unwrap_or_default()
    }

    /// Node `id` when live.
    pub fn node(&self, id: &str) -> Option<blindfold::cluster::NodeInfo> {
        self.block_on(self.cluster.node(id)).ok().flatten()
    }
}

/// Waits up to `deadline` for `cond`; returns how long it took, or `None`.
pub fn within(deadline: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
