//! `blindfold edge` as a real child process on loopback port 0; killed on drop.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EdgeProcess {
    pub child: Child,
    pub http: SocketAddr,
}

impl EdgeProcess {
    /// Starts an edge that may connect sessions to `forwarder` (a media address).
    pub fn start(forwarder: SocketAddr) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_blindfold"))
            .args(["edge", "--listen", "127.0.0.1:0", "--media-ip", "127.0.0.1"])
            .args(["--forwarder", &forwarder.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("edge starts");
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
        let deadline = Instant::now() + super::DEADLINE;
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
                && let Some(a) = line.strip_prefix("edge http://")
                && let Ok(http) = a.trim().parse()
            {
                return Self { child, http };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("edge did not report its address");
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
