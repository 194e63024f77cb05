#!/usr/bin/env python3
"""Memory per idle keep-alive client connection: gatehouse against an nginx proxy.

Each proxy (one worker) forwards to an nginx `return 200`. The script opens
N client connections, sends one request on each and reads its response (so
the connection has served a request, as a mobile or long-polling client's
has), then leaves them all open and idle and reads the proxy's RSS again.
The difference over N is the cost of one idle connection. Loopback only;
bounded by N and a 60 s deadline.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEHOUSE = Path(os.environ.get("GATEHOUSE_BIN") or ROOT / "target" / "release" / "gatehouse")
UP, NGINX, GH = 18180, 18181, 18182
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: idle-bench\r\n\r\n"


def rss_kib(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def worker_pid(master):
    kids = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(kids[0]) if kids else master


def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def open_idle(port, n, request, deadline):
    """N connections, each with one request answered (if `request`), left open.

    The requests go one at a time, so the proxy needs one upstream connection
    and what is measured is the client side alone.
    """
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(max(0.1, deadline - time.time()))
        socks.append(s)
        if request:
            s.sendall(REQUEST)
            data = b""
            while not (b"\r\n\r\n" in data and data.endswith(b"ok")):
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("proxy closed a connection")
                data += chunk
    return socks


def measure(pid, port, n, request, rounds=1):
    """RSS growth per connection of the last of `rounds` batches of N, all
    held open: from the second round on, memory the first round freed (a
    fresh process's transient peak) is reused, as in a server that has run."""
    socks = []
    for _ in range(rounds):
        base = rss_kib(pid)
        socks += open_idle(port, n, request, time.time() + 60)
        # Past gatehouse's 2 s park delay (an idle HTTP/1 connection then
        # holds no HTTP state), within both proxies' keep-alive timeouts.
        time.sleep(3.0)
        after = rss_kib(pid)
    for s in socks:
        s.close()
    time.sleep(0.5)
    return (after - base) * 1024 / n


def nginx(work, name, body, procs):
    conf = work / f"{name}.conf"
    conf.write_text(f"worker_processes 1; daemon off; pid {work}/{name}.pid; error_log {work}/{name}.err warn;"
                    f" events {{ worker_connections 20000; }} http {{ access_log off; server {{ {body} }} }}\n")
    p = subprocess.Popen(["nginx", "-p", str(work), "-c", str(conf)], stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def gatehouse(work, procs):
    (work / "gh.yaml").write_text(
        f'listeners: [{{ addr: "127.0.0.1:{GH}" }}]\nworkers: 1\n'
        # Idle keep-alive lasts header_read_timeout (default 10 s): long
        # enough here for several rounds, as nginx's keepalive_timeout is.
        f'limits: {{ header_read_timeout: 60s }}\n'
        f'services:\n  - name: up\n    instances: [{{ url: "http://127.0.0.1:{UP}" }}]\n'
        f'routes:\n  - {{ id: all, match: {{ path: /* }}, upstream: up }}\n')
    p = subprocess.Popen([str(GATEHOUSE), "run", "-c", str(work / "gh.yaml")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**os.environ, "GATEHOUSE_LOG": "warn"})
    procs.append(p)
    return p


def fresh(start, port, n, request, rounds=1):
    """Starts a proxy, lets it settle, and measures N idle connections on it."""
    procs = []
    try:
        p = start(procs)
        wait_port(port)
        time.sleep(0.5)
        pid = worker_pid(p.pid)
        # One request first: the upstream connection pool and lazy statics are
        # not counted as the cost of the idle clients.
        open_idle(port, 1, True, time.time() + 10)[0].close()
        time.sleep(0.3)
        return measure(pid, port, n, request, rounds)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def per_connection(n, rounds=1):
    """[(label, gatehouse bytes, nginx bytes)] for idle connections after one
    request and never used (the last of `rounds` batches of N on each process)."""
    work = Path(tempfile.mkdtemp(prefix="gh-idle-"))
    procs = []
    try:
        nginx(work, "up", f"listen 127.0.0.1:{UP}; location / {{ return 200 ok; }}", procs)
        wait_port(UP)
        proxy = (f"listen 127.0.0.1:{NGINX}; keepalive_requests 1000000; keepalive_timeout 300s;"
                 f" location / {{ proxy_pass http://127.0.0.1:{UP}; proxy_http_version 1.1;"
                 f" proxy_set_header Connection \"\"; }}")
        rows = []
        for label, request in (("after one request", True), ("never used", False)):
            g = fresh(lambda ps: gatehouse(work, ps), GH, n, request, rounds)
            x = fresh(lambda ps: nginx(work, "nginx", proxy, ps), NGINX, n, request, rounds)
            rows.append((label, g, x))
        return rows
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=1, choices=range(1, 6),
                    help="batches of N held together (at most 10,000 in all: gatehouse's default "
                         "max_connections); the last one's growth is reported")
    args = ap.parse_args()
    if args.connections * args.rounds > 10000:
        ap.error("connections x rounds must be at most 10,000")
    n = args.connections
    rounds = f", round {args.rounds} of {args.rounds}" if args.rounds > 1 else ""
    print(f"{n} idle HTTP/1.1 connections, bytes of RSS each (one worker, a fresh process per line{rounds}):")
    for label, g, x in per_connection(n, args.rounds):
        print(f"  {label}: gatehouse {g:.0f} B, nginx {x:.0f} B")


if __name__ == "__main__":
    sys.exit(main())
