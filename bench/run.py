#!/usr/bin/env python3
"""Gatehouse vs nginx vs HAProxy, in one run, on this machine.

Every proxy runs one worker pinned to cpu1 together with the upstream (an nginx
`return 200`); the load generator runs alone on cpu0. Saturation: wrk -t1 -c32,
targets interleaved for several rounds, medians and spread. Latency added at a
fixed rate: oha -q. CPU per request: utime+stime from /proc/<pid>/stat around
each run. Writes bench/results/latest.md and latest.svg and prints the table.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import idle

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# GATEHOUSE_BIN measures another build (a saved "before" binary) with the same cases.
GATEHOUSE = Path(os.environ.get("GATEHOUSE_BIN") or ROOT / "target" / "release" / "gatehouse")
PLUGINS = ROOT / "target" / "bench-plugins"
TAG_A = ROOT / "target" / "wasm32-wasip2" / "plugin" / "tag_a.wasm"
TAG_B = ROOT / "target" / "wasm32-wasip2" / "plugin" / "tag_b.wasm"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PORTS = {"upstream": 18080, "nginx": 18081, "haproxy": 18082, "gatehouse": 18083, "gatehouse-chain": 18084, "gatehouse-swap": 18085,
         "redis": 18086, "gatehouse-rl-local": 18087, "gatehouse-rl-redis": 18088, "nginx-h2": 18089,
         "gatehouse-h2": 18090, "nginx-cache": 18091, "gatehouse-cache": 18092}
# Served over TLS (HTTP/2 by ALPN); measured with oha --http2, not wrk.
TLS_TARGETS = ("nginx-h2", "gatehouse-h2")


def cpu_ticks(pid):
    """utime + stime of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def stop_all(procs, timeout=10):
    """Terminates `procs` in reverse start order; kills one that outlives `timeout`."""
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_http(url, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer (the chain's 401 without a token) means it is up
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Stack:
    """All servers of the run, started pinned to cpu1 and stopped at exit."""

    def __init__(self, work):
        self.work = Path(work)
        self.procs = {}

    def spawn(self, name, argv, **kw):
        log = open(self.work / f"{name}.log", "wb")
        p = subprocess.Popen(["taskset", "-c", "1", *argv], stdout=log, stderr=subprocess.STDOUT, **kw)
        self.procs[name] = p
        return p

    def pid_of(self, name):
        """The process doing the work: nginx's worker, not its master."""
        p = self.procs[name]
        if name == "upstream" or name.startswith("nginx"):
            out = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            return int(out[0]) if out else p.pid
        return p.pid

    def start(self):
        up = PORTS["upstream"]
        (self.work / "logs").mkdir(exist_ok=True)
        common = "worker_processes 1; daemon off; pid {pid}; error_log {work}/logs/{name}.err warn;"
        self.nginx_conf("upstream", common, upstream_server(up))
        # One self-signed certificate for both TLS targets (ECDSA P-256, like most sites).
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(self.work / "tls.key"), "-out", str(self.work / "tls.pem"),
                        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.nginx_conf("nginx-h2", common, f"""
            upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}
            server {{ listen 127.0.0.1:{PORTS['nginx-h2']} ssl http2 backlog=4096; keepalive_requests 1000000;
                      ssl_certificate {self.work}/tls.pem; ssl_certificate_key {self.work}/tls.key;
                      location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
        self.nginx_conf("nginx", common, nginx_proxy_server(PORTS["nginx"], up))
        # nginx's workers run as `nobody`: they must reach the cache directory.
        os.chmod(self.work, 0o755)
        self.nginx_conf("nginx-cache", common, nginx_cache_server(PORTS["nginx-cache"], up, self.work))
        (self.work / "haproxy.cfg").write_text(f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend fe
    bind 127.0.0.1:{PORTS['haproxy']}
    default_backend be
backend be
    server up 127.0.0.1:{up}
""")
        self.spawn("haproxy", ["haproxy", "-f", str(self.work / "haproxy.cfg")])
        shutil.rmtree(self.work / "plugins", ignore_errors=True)
        shutil.copytree(PLUGINS, self.work / "plugins")
        shutil.copy(TAG_A, self.work / "plugins" / "tag.wasm")
        self.gatehouse("gatehouse", "")
        self.gatehouse("gatehouse-h2", "", tls=True)
        self.gatehouse("gatehouse-chain", CHAIN)
        self.gatehouse("gatehouse-cache", CACHE)
        self.gatehouse("gatehouse-swap", "    plugins:\n      - { name: tag }\n")
        # A limit never reached: the cost of counting, not of refusing.
        self.spawn("redis", ["redis-server", "--port", str(PORTS["redis"]), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"])
        for backend in ("local", "redis"):
            self.gatehouse(f"gatehouse-rl-{backend}", rate_limit_plugins(backend))
        for name, port in PORTS.items():
            if name == "redis":
                continue
            if name in TLS_TARGETS:
                time.sleep(0.5)
                continue
            try:
                wait_http(f"http://127.0.0.1:{port}/")
            except RuntimeError:
                sys.stderr.write((self.work / f"{name}.log").read_text(errors="replace"))
                raise

    def nginx_conf(self, name, common, server):
        conf = self.work / f"{name}.conf"
        conf.write_text(common.format(pid=self.work / f"{name}.pid", work=self.work, name=name)
                        + "events { worker_connections 4096; }\n"
                        + f"http {{ access_log off; {server} }}\n")
        self.spawn(name, ["nginx", "-p", str(self.work), "-c", str(conf)])

    def gatehouse(self, name, plugins, tls=False):
        conf = self.work / f"{name}.yaml"
        tls_keys = (f', tls: {{ certificates: [{{ cert_file: "{self.work}/tls.pem", key_file: "{self.work}/tls.key" }}] }}'
                    if tls else "")
        conf.write_text(gatehouse_config(PORTS[name], PORTS["upstream"], PORTS["redis"], tls_keys, plugins))
        self.spawn(name, [str(GATEHOUSE), "run", "-c", str(conf)], env={**os.environ, "GATEHOUSE_LOG": "warn"})

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


JWT_SECRET = "bench-secret-that-is-at-least-32-bytes"


def bench_token():
    """An HS256 token for the chain case (scope `bench`, valid for a day)."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "bench", "scope": "bench", "exp": int(time.time()) + 86400}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def gatehouse_config(port, upstream, redis, tls_keys, plugins):
    """One worker, one route to the upstream, `plugins` attached to it."""
    return f"""listeners: [{{ addr: "127.0.0.1:{port}"{tls_keys} }}]
workers: 1
redis: {{ url: "redis://127.0.0.1:{redis}" }}
plugin_dir: ./plugins
services:
  - name: up
    instances: [{{ url: "http://127.0.0.1:{upstream}" }}]
routes:
  - id: all
    match: {{ path: /* }}
    upstream: up
{plugins}"""


def upstream_server(port):
    """The nginx `return 200` upstream every proxy forwards to."""
    return f"""
            server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
                      location / {{ return 200 "ok"; }} }}"""


def nginx_proxy_server(port, upstream):
    """nginx as the reverse proxy under test, with upstream keep-alive."""
    return f"""
            upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}
            server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
                      location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""


def nginx_cache_server(port, upstream, work):
    """nginx proxy_cache serving the upstream's answer from its cache (the
    cached-route comparison); the cache directory is on the run's tmpfs dir."""
    return f"""
            proxy_cache_path {work}/nginx-cache levels=1:2 keys_zone=c:10m max_size=64m inactive=10m use_temp_path=off;
            upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}
            server {{ listen 127.0.0.1:{port} backlog=4096; keepalive_requests 1000000;
                      location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                                   proxy_cache c; proxy_cache_valid 200 1m; proxy_cache_lock on; }} }}"""


def plugins_block(*attachments):
    """A route's `plugins:` list from attachment lines."""
    return "    plugins:\n" + "".join(f"      - {a}\n" for a in attachments)


# The 3-plugin chain, by plugin: jwt-auth HS256, rate-limit on the local
# backend (by consumer, never reached: the cost of counting), request-transform
# (a header removed, two set, one from the consumer attribute).
CHAIN_PLUGINS = {
    "jwt-auth": f'{{ name: jwt-auth, config: {{ algorithms: [HS256], secret: "{JWT_SECRET}" }} }}',
    "rate-limit": "{ name: rate-limit, config: { limits: [{ scope: consumer, limit: 1000000000, window: 1s }] } }",
    "request-transform": "{ name: request-transform, config: { headers: { remove: [x-debug],"
                         ' set: { x-consumer: "{consumer}", x-gateway: gatehouse } } } }',
}
CHAIN = plugins_block(*CHAIN_PLUGINS.values())
# The upstream's `ok` sends no Cache-Control: both caches store it for a minute.
CACHE = "    cache: { default_ttl: 60s }\n"


def rate_limit_plugins(backend):
    """rate-limit alone, by client IP, on `backend`, with a limit never reached."""
    return plugins_block("{ name: rate-limit, config: { backend: "
                         + backend + ", limits: [{ scope: ip, limit: 1000000000, window: 1s }] } }")


# Every target gets the same request, token included (only the chain reads it).
AUTH = f"Authorization: Bearer {bench_token()}"
# ...but not the cached routes': a shared cache must not store an answer to a
# request that carries Authorization (RFC 9111 §3.5). Gatehouse follows that
# rule (nginx's proxy_cache does not), so with the token every fetch after the
# first expiry was a miss and the cached-route rows measured a proxy.
ANONYMOUS = ("nginx-cache", "gatehouse-cache")


def auth_for(url):
    """The `-H` arguments for `url`: the token, unless it is a cached route's."""
    return [] if any(f":{PORTS[t]}/" in url for t in ANONYMOUS) else ["-H", AUTH]


def parse_duration(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)", s)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[unit]


def wrk(url, seconds, conns=32, threads=1, cpu="0"):
    """wrk against `url`, pinned to `cpu` (None: not pinned)."""
    pin = ["taskset", "-c", cpu] if cpu is not None else []
    out = subprocess.run(
        [*pin, "wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", *auth_for(url), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: parse_duration(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {"rps": rps, "total": total, "p50": lat.get("50"), "p99": lat.get("99"), "failed": failed}


def oha_h2(url, seconds):
    """Saturation over HTTP/2 + TLS (wrk speaks neither): 32 connections."""
    out = subprocess.run(
        ["taskset", "-c", "0", "oha", "-z", f"{seconds}s", "-c", "32", "--http2", "--insecure",
         "--no-tui", "--output-format", "json", *auth_for(url), url],
        capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    pct = data["latencyPercentiles"]
    s = data["summary"]
    total = sum(data.get("statusCodeDistribution", {}).values())
    ok = data.get("statusCodeDistribution", {}).get("200", 0)
    # Requests still in flight when -z ends are reported as "aborted due to deadline": not failures.
    errors = sum(n for e, n in data.get("errorDistribution", {}).items() if "deadline" not in e)
    return {"rps": s["requestsPerSec"], "total": total, "p50": pct["p50"] * 1e6, "p99": pct["p99"] * 1e6,
            "failed": total - ok + errors}


def oha(url, rate, seconds):
    out = subprocess.run(
        ["taskset", "-c", "0", "oha", "-z", f"{seconds}s", "-q", str(rate), "-c", "32", "--latency-correction",
         "--no-tui", "--output-format", "json", *auth_for(url), url],
        capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    pct = data["latencyPercentiles"]
    return {k: pct[k] * 1e6 for k in ("p50", "p99", "p99.9")}


def svg(rows, path):
    """A bar chart of median req/s per target and p99 at the fixed rate."""
    width, bar_h, gap, left = 760, 22, 10, 190
    top = 40
    h = top + len(rows) * (bar_h + gap) + 30
    peak = max(r["rps"] for r in rows) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="13">',
             '<text x="10" y="22" font-size="15" font-weight="bold">Requests/s (median, wrk -t1 -c32, one worker each); fixed-rate p99 added</text>']
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = (width - left - 170) * r["rps"] / peak
        color = "#2b7bb9" if r["name"].startswith("gatehouse") else "#999"
        parts.append(f'<text x="10" y="{y + 16}">{r["name"]}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.0f}" height="{bar_h}" fill="{color}"/>')
        extra = f' · p99 {r["fixed"]["p99"]:.0f}µs' if r.get("fixed") else ""
        parts.append(f'<text x="{left + w + 6:.0f}" y="{y + 16}">{r["rps"]:.0f}{extra}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def measure(stack, targets, rounds, run):
    """Runs `run(target)` for every target, interleaved over `rounds`, with the
    target's CPU time per request; returns one row of medians per target."""
    runs = {t: [] for t in targets}
    for _ in range(rounds):
        for t in targets:
            pid = stack.pid_of(t)
            c0 = cpu_ticks(pid)
            r = run(t)
            r["cpu_us"] = (cpu_ticks(pid) - c0) / CLK_TCK * 1e6 / max(r["total"], 1)
            runs[t].append(r)
    rows = []
    for t in targets:
        rs = runs[t]
        rps = [r["rps"] for r in rs]
        med = statistics.median(rps)
        rows.append({"name": t, "rps": med, "spread": (max(rps) - min(rps)) / med if med else 0,
                     "p50": statistics.median(r["p50"] for r in rs),
                     "p99": statistics.median(r["p99"] for r in rs),
                     "cpu_us": statistics.median(r["cpu_us"] for r in rs),
                     "failed": sum(r["failed"] for r in rs)})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="a few seconds per case")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.smoke else 5)
    # 5 rounds of 4 s (3 for HTTP/2) keep a full run under 5 minutes; 6 s rounds took 6.
    seconds = args.seconds or (2 if args.smoke else 4)
    fixed_seconds = 2 if args.smoke else 5
    started = time.monotonic()
    targets = ["upstream", "nginx", "haproxy", "gatehouse", "gatehouse-chain", "gatehouse-rl-local",
               "gatehouse-rl-redis", "nginx-cache", "gatehouse-cache"]
    labels = {"upstream": "direct (nginx return 200)", "nginx": "nginx proxy", "haproxy": "HAProxy",
              "gatehouse": "gatehouse, no plugins", "gatehouse-chain": "gatehouse, 3-plugin chain",
              "gatehouse-rl-local": "gatehouse, rate-limit local", "gatehouse-rl-redis": "gatehouse, rate-limit redis",
              "nginx-cache": "nginx proxy_cache hit", "gatehouse-cache": "gatehouse cache hit"}
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as work:
        stack = Stack(work)
        try:
            stack.start()
            for t in targets:  # warm pools and caches
                wrk(f"http://127.0.0.1:{PORTS[t]}/", 1)
            rows = [dict(row, label=labels[row["name"]])
                    for row in measure(stack, targets, rounds, lambda t: wrk(f"http://127.0.0.1:{PORTS[t]}/", seconds))]
            by = {r["name"]: r for r in rows}
            rate = min(5000, int(by["nginx"]["rps"] / 2))
            tls_rows = []
            if shutil.which("oha"):
                for t in TLS_TARGETS:
                    oha_h2(f"https://127.0.0.1:{PORTS[t]}/", 1)
                tls_rows = measure(stack, TLS_TARGETS, min(rounds, 3),
                                   lambda t: oha_h2(f"https://127.0.0.1:{PORTS[t]}/", seconds))
            if shutil.which("oha"):
                for r in rows:
                    r["fixed"] = oha(f"http://127.0.0.1:{PORTS[r['name']]}/", rate, fixed_seconds)
            swap = hot_swap(Path(work), seconds * 2)
            mem = memory(Path(work))
            mem["conns"] = idle.per_connection(1000 if args.smoke else 5000)
        finally:
            stack.stop()
            logs = RESULTS / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            for f in Path(work).glob("*.log"):
                shutil.copy(f, logs / f.name)
    instructions = count_instructions(400 if args.smoke else 4000)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    report(rows, rate, swap, rounds, seconds, load_before, load_after, mem, tls_rows, instructions,
           time.monotonic() - started)


def count_instructions(requests):
    """User-space instructions per request under callgrind (bench/instructions.py):
    the figure a noisy VM does not move. Empty without valgrind."""
    if not shutil.which("valgrind"):
        return {}
    import instructions as callgrind  # bench/instructions.py, beside this file
    counts = {case: callgrind.per_request(case, requests) for case in ("nginx", "plain", "chain")}
    return {**counts, "requests": requests}


def hot_swap(work, seconds):
    """wrk against a gatehouse whose plugin file is replaced every second."""
    stop = threading.Event()
    swaps = 0

    def swapper():
        nonlocal swaps
        files = [TAG_B, TAG_A]
        while not stop.wait(1.0):
            tmp = work / "plugins" / "tag.wasm.tmp"
            shutil.copy(files[swaps % 2], tmp)
            os.rename(tmp, work / "plugins" / "tag.wasm")
            swaps += 1

    t = threading.Thread(target=swapper)
    t.start()
    try:
        r = wrk(f"http://127.0.0.1:{PORTS['gatehouse-swap']}/", seconds)
    finally:
        stop.set()
        t.join()
    return {"swaps": swaps, "requests": r["total"], "failed": r["failed"], "rps": r["rps"]}


def rss_kib(config_text, work):
    """Starts gatehouse on `config_text`, waits until it listens, returns VmRSS in KiB."""
    conf = work / "rss.yaml"
    conf.write_text(config_text)
    p = subprocess.Popen([str(GATEHOUSE), "run", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env={**os.environ, "GATEHOUSE_LOG": "warn"}, text=True)
    try:
        p.stdout.readline()  # "listening on ..." once every plugin is loaded
        # RSS_WAIT (seconds) reads it later, for allocators that give memory back late.
        time.sleep(float(os.environ.get("RSS_WAIT", "0.5")))
        status = Path(f"/proc/{p.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    finally:
        p.terminate()
        p.wait(timeout=10)


def memory(work):
    """Idle RSS, and RSS with 1,000 routes × 3 plugin attachments (shared and distinct configs)."""
    head = (f'listeners: [{{ addr: "127.0.0.1:0" }}]\nworkers: 1\nplugin_dir: ./plugins\nservices:\n'
            f'  - name: up\n    instances: [{{ url: "http://127.0.0.1:{PORTS["upstream"]}" }}]\nroutes:\n')
    def routes(distinct):
        out = []
        for i in range(1000):
            plugins = ", ".join(
                f"{{ name: hello, config: {{ greeting: {'r%dp%d' % (i, k) if distinct else 'p%d' % k} }} }}" for k in range(3))
            out.append(f"  - id: r{i}\n    match: {{ path: /r{i}/* }}\n    upstream: up\n    plugins: [{plugins}]\n")
        return "".join(out)
    idle = rss_kib(head + "  - { id: all, match: { path: /* }, upstream: up }\n", work)
    return {"idle": idle, "shared": rss_kib(head + routes(False), work), "distinct": rss_kib(head + routes(True), work)}


def report(rows, rate, swap, rounds, seconds, load_before, load_after, mem, tls_rows=(), instructions=None,
           elapsed=0.0):
    by = {r["name"]: r for r in rows}
    direct = by["upstream"]
    lines = [
        f"# Gatehouse benchmark — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, {platform.platform()}. "
        f"Load average before/after: {' '.join(load_before)} / {' '.join(load_after)}.",
        f"Each proxy: one worker, pinned with the upstream to cpu1; wrk -t1 -c32 pinned to cpu0, "
        f"{rounds} interleaved rounds × {seconds}s; fixed rate {rate} req/s with oha --latency-correction. "
        f"The whole run took {elapsed / 60:.1f} minutes.",
        "",
        "| target | req/s (median) | spread | p50 µs | p99 µs | CPU µs/req | fixed-rate p50 / p99 / p99.9 µs | added p50 µs | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r.get("fixed")
        fixed = f"{f['p50']:.0f} / {f['p99']:.0f} / {f['p99.9']:.0f}" if f else "n/a"
        added = f"{f['p50'] - direct['fixed']['p50']:+.0f}" if f and direct.get("fixed") else "n/a"
        flag = " ⚠ invalid (spread > 15%)" if r["spread"] > 0.15 else ""
        lines.append(f"| {r['label']} | {r['rps']:.0f} | {r['spread'] * 100:.1f}%{flag} | {r['p50']:.0f} | {r['p99']:.0f} "
                     f"| {r['cpu_us']:.1f} | {fixed} | {added} | {r['failed']} |")
    g, n, ch, h = by["gatehouse"], by["nginx"], by["gatehouse-chain"], by["haproxy"]
    lines += [
        "",
        "Ratios in this run:",
        "",
        f"- gatehouse / nginx, req/s: **{g['rps'] / n['rps']:.2f}×** (target ≥ 1.0)",
        f"- gatehouse / HAProxy, req/s: {g['rps'] / h['rps']:.2f}×",
        f"- gatehouse CPU per request / nginx's: **{g['cpu_us'] / n['cpu_us']:.2f}×** (target ≤ 1.0)",
        f"- 3-plugin chain / no plugins, req/s: **{ch['rps'] / g['rps']:.2f}×** (target ≥ 0.85)",
        f"- nginx / direct: {n['rps'] / direct['rps']:.2f}×; gatehouse / direct: {g['rps'] / direct['rps']:.2f}×",
    ]
    if g.get("fixed") and n.get("fixed") and direct.get("fixed"):
        lines.append(f"- added p50 at {rate} req/s: gatehouse {g['fixed']['p50'] - direct['fixed']['p50']:+.0f} µs, "
                     f"nginx {n['fixed']['p50'] - direct['fixed']['p50']:+.0f} µs (target: gatehouse ≤ nginx)")
    gc, nc = by["gatehouse-cache"], by["nginx-cache"]
    lines.append(f"- cached route, gatehouse cache hit / nginx proxy_cache hit: req/s **{gc['rps'] / nc['rps']:.2f}×**, "
                 f"CPU per request {gc['cpu_us'] / max(nc['cpu_us'], 1e-9):.2f}×")
    for backend in ("local", "redis"):
        rl = by[f"gatehouse-rl-{backend}"]
        extra = ""
        if rl.get("fixed") and g.get("fixed"):
            extra = (f"; added at {rate} req/s over no plugins: p50 {rl['fixed']['p50'] - g['fixed']['p50']:+.0f} µs, "
                     f"p99 {rl['fixed']['p99'] - g['fixed']['p99']:+.0f} µs")
        lines.append(f"- rate-limit, {backend} backend: {rl['rps']:.0f} req/s = {rl['rps'] / g['rps']:.2f}× no plugins, "
                     f"CPU {rl['cpu_us'] - g['cpu_us']:+.1f} µs/req in the gateway{extra}")
    lines += [
        f"- hot swap: plugin replaced {swap['swaps']} times during {swap['requests']} requests "
        f"({swap['rps']:.0f} req/s): **{swap['failed']} failed**",
        f"- RSS: idle {mem['idle'] / 1024:.1f} MB; 1,000 routes × 3 plugins: {mem['shared'] / 1024:.1f} MB with one "
        f"config per plugin (identical attachments share one instance pool), {mem['distinct'] / 1024:.1f} MB with "
        f"3,000 distinct configs (3,000 pools, one warm instance each) (target < 256 MB)",
        "- RSS per idle HTTP/1.1 client connection (bench/idle.py): " + "; ".join(
            f"{label}: gatehouse {g / 1024:.1f} KB, nginx {x / 1024:.1f} KB" for label, g, x in mem.get("conns", []))
        + " (target ≤ 1.5 KB)",
        "",
        "The 3-plugin chain is jwt-auth (HS256) + rate-limit (local, by consumer, never reached) + request-transform (one header removed, two set).",
    ]
    if instructions:
        i = instructions
        lines += [
            "",
            f"User-space instructions per request under callgrind ({i['requests']:,} keep-alive requests after a "
            "warm-up, every thread; bench/instructions.py): "
            f"nginx proxy {i['nginx'] / 1000:.1f}k, gatehouse no plugins {i['plain'] / 1000:.1f}k "
            f"(**{i['plain'] / i['nginx']:.2f}×** nginx), 3-plugin chain {i['chain'] / 1000:.1f}k "
            f"({i['chain'] / i['plain']:.2f}× no plugins).",
        ]
    if tls_rows:
        lines += [
            "",
            f"HTTP/2 over TLS (ECDSA P-256 certificate, oha --http2 -c32 pinned to cpu0, {min(rounds, 3)} interleaved rounds; upstream hop HTTP/1.1):",
            "",
            "| target | req/s (median) | spread | p50 µs | p99 µs | CPU µs/req | failed |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in tls_rows:
            flag = " ⚠ invalid (spread > 15%)" if r["spread"] > 0.15 else ""
            lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['spread'] * 100:.1f}%{flag} | {r['p50']:.0f} "
                         f"| {r['p99']:.0f} | {r['cpu_us']:.1f} | {r['failed']} |")
        t = {r["name"]: r for r in tls_rows}
        if t["nginx-h2"]["rps"]:
            lines.append(f"\n- gatehouse / nginx over h2+TLS, req/s: **{t['gatehouse-h2']['rps'] / t['nginx-h2']['rps']:.2f}×**, "
                         f"CPU per request {t['gatehouse-h2']['cpu_us'] / max(t['nginx-h2']['cpu_us'], 1e-9):.2f}×")
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (RESULTS / "latest.md").write_text(text)
    svg(rows, RESULTS / "latest.svg")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
