//! Issue 14 item 5: a stranger cannot make the service buffer a huge WebSocket frame.
//! Connections that never join each declare an 8 MiB text frame and send all of it but
//! its last octet; the service refuses the frame from its header (frames are capped at
//! 64 KiB, like messages) and closes those connections, and its memory does not grow by
//! what they sent. Before the fix only the message size was capped, and the library
//! buffered every frame up to its 16 MiB default.

mod common;

use std::io::Write;
use std::time::Duration;

use common::signal::*;
use common::*;

const CONNECTIONS: usize = 10;
const FRAME: usize = 8 << 20;

#[test]
fn oversize_frames_are_refused_from_their_header() {
    let serve = ServeProcess::start(1, &[]);
    let signal = SignalProcess::start(serve.control, &[]);
    let baseline = signal.rss_kib();
    let chunk = vec![b'a'; 64 * 1024];
    let mut conns = Vec::new();
    let mut refused_early = 0;
    for _ in 0..CONNECTIONS {
        let mut ws = RawWs::open(signal.addr);
        ws.stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut sent = 0;
        let mut ok = ws
            .stream
            .write_all(&RawWs::frame_header(0x1, FRAME))
            .is_ok();
        while ok && sent < FRAME - 1 {
            let n = chunk.len().min(FRAME - 1 - sent);
            ok = ws.stream.write_all(&chunk[..n]).is_ok();
            sent += n;
        }
        if !ok {
            refused_early += 1;
        }
        conns.push(ws);
    }
    let peak = signal.peak_rss_kib();
    let closed = conns
        .iter_mut()
        .filter_map(|ws| ws.closed_within(DEADLINE).then_some(()))
        .count();
    eprintln!(
        "frame cap: {CONNECTIONS} × {FRAME}-octet frames; {refused_early} writes refused; \
         {closed} connections closed; RSS {baseline} KiB before, peak {peak} KiB"
    );
    assert_eq!(
        closed, CONNECTIONS,
        "connections with an oversize frame stay open"
    );
    assert!(
        peak < baseline + 16 * 1024,
        "the service grew from {baseline} KiB to a peak of {peak} KiB"
    );
}
