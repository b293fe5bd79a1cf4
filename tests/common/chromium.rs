//! A small DevTools-protocol driver for Debian's headless Chromium with fake camera and
//! microphone: start the browser, open pages, evaluate JavaScript (awaiting promises),
//! take screenshots. One browser process per [`Chromium`], killed (and its profile
//! directory removed) on drop. Also a one-page static HTTP site on loopback, so pages
//! run in a secure context (`http://127.0.0.1` counts as one) for getUserMedia.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether a `chromium` binary is on PATH (`.ci/run` installs it).
pub fn available() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A headless Chromium and its DevTools connection.
pub struct Chromium {
    child: Child,
    profile: std::path::PathBuf,
    rt: tokio::runtime::Runtime,
    ws: std::sync::Mutex<Ws>,
    next_id: AtomicU64,
}

/// One page (a DevTools target with its flat session).
pub struct Page<'a> {
    browser: &'a Chromium,
    session: String,
}

impl Chromium {
    /// Starts Chromium headless with fake media devices; panics if it does not come up.
    pub fn start() -> Self {
        let profile = std::env::temp_dir().join(format!(
            "blindfold-chromium-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].trim().to_string());
                }
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not print its DevTools address");
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ws, _) = rt
            .block_on(tokio_tungstenite::connect_async(url.as_str()))
            .expect("DevTools WebSocket");
        Self {
            child,
            profile,
            rt,
            ws: std::sync::Mutex::new(ws),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends one command (to the browser or, with `session`, to a page) and waits for its
    /// answer, skipping events; panics on a protocol error or after 60 s.
    pub fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut ws = self.ws.lock().unwrap();
        self.rt.block_on(async {
            ws.send(Message::text(msg.to_string())).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let next = tokio::time::timeout_at(deadline, ws.next())
                    .await
                    .unwrap_or_else(|_| panic!("DevTools: no answer to {method}"));
                let Some(Ok(Message::Text(t))) = next else {
                    continue;
                };
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == json!(id) {
                    if let Some(e) = v.get("error") {
                        panic!("DevTools {method}: {e}");
                    }
                    return v["result"].clone();
                }
            }
        })
    }

    /// Opens `url` in a new page and waits until its document has loaded.
    pub fn page(&self, url: &str) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let page = Page {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_string(),
        };
        page.call("Page.enable", json!({}));
        page.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(30);
        while page.eval("document.readyState") != json!("complete") {
            assert!(Instant::now() < deadline, "page {url} did not load");
            std::thread::sleep(Duration::from_millis(50));
        }
        page
    }
}

impl Page<'_> {
    /// A DevTools command to this page.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params)
    }

    /// Evaluates `expr` in the page, awaiting a promise, and returns its JSON value;
    /// panics with the page's exception text if it throws.
    pub fn eval(&self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("page threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it returns true or `deadline` passes; returns whether it did.
    pub fn wait_for(&self, expr: &str, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.eval(expr) == json!(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// A PNG screenshot of the page, base64 as DevTools returns it.
    pub fn screenshot_base64(&self) -> String {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        r["data"].as_str().unwrap().to_string()
    }
}

impl Chromium {
    /// The browser's main process id (its renderers and workers are its descendants).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A one-page HTTP site on 127.0.0.1 (port 0), serving `html` for every GET, on its own
/// thread for the life of the test process.
pub fn static_site(html: &'static str) -> String {
    static_files(vec![("/", "text/html; charset=utf-8", html)])
}

/// A static HTTP site on 127.0.0.1 (port 0): each `(path, content type, body)` is served
/// at its path, `/` for anything else. On its own thread for the life of the test process.
pub fn static_files(files: Vec<(&'static str, &'static str, &'static str)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let n = conn.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (_, ctype, body) = files
                .iter()
                .find(|(p, _, _)| *p == path)
                .or_else(|| files.iter().find(|(p, _, _)| *p == "/"))
                .copied()
                .unwrap_or(("/", "text/plain", ""));
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    format!("http://{addr}/")
}
