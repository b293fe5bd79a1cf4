#!/usr/bin/env python3
"""Memory a signalling service spends on idle WebSockets (issue 14 item 5).

Starts `blindfold serve` and `blindfold signal` (loopback, port 0), opens N upgraded
WebSockets that never join, spread over 127.0.0.x so the per-source cap does not refuse
them, and prints the service's RSS before and after.

    cargo build --release && scripts/signal-idle-rss.py [target/release/blindfold] [N]
"""
import re
import socket
import subprocess
import sys
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/blindfold"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


def first_line(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise SystemExit(f"no '{prefix}' line")


serve = subprocess.Popen(
    [binary, "serve", "--media", "127.0.0.1:0", "--control", "127.0.0.1:0",
     "--control-token", "t", "--shards", "1", "--pin", "false"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
signal = None
try:
    first_line(serve, "media ")
    control = first_line(serve, "control ")
    signal = subprocess.Popen(
        [binary, "signal", "--listen", "127.0.0.1:0", "--forwarder", control,
         "--control-token", "t", "--join-timeout-secs", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    host, port = re.match(r"ws://([\d.]+):(\d+)", first_line(signal, "signal ")).groups()
    request = (f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    time.sleep(0.5)
    before = rss_kib(signal.pid)
    conns, refused = [], 0
    for i in range(count):
        s = socket.socket()
        s.bind((f"127.0.0.{1 + i // 250}", 0))
        s.connect((host, int(port)))
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(4096)
            if not data:
                break
            head += data
        if b" 101 " in head.split(b"\r\n", 1)[0]:
            conns.append(s)
        else:
            refused += 1
            s.close()
    time.sleep(1)
    after = rss_kib(signal.pid)
    print(f"{len(conns)} idle WebSockets ({refused} refused): RSS {before} KiB -> {after} KiB, "
          f"{(after - before) / max(len(conns), 1):.1f} KiB each")
finally:
    for p in (signal, serve):
        if p:
            p.kill()
            p.wait()
