#!/usr/bin/env python3
"""Instructions per request, the figure that does not move with a noisy VM.

Runs the release gateway under `valgrind --tool=callgrind` in front of an nginx
`return 200` upstream, warms it up, zeroes the counters, sends a fixed number of
keep-alive requests and divides the instructions counted (user space, every
thread) by that number. Cases are the ones `bench/run` measures by wall clock,
plus `nginx` (its proxy worker, for the same comparison in instructions) and
each plugin of the chain alone.

    bench/instructions.py [nginx|plain|chain|rate-limit|<plugin>-alone...] [--requests N] [--keep DIR]

`--keep DIR` leaves the callgrind output there for `callgrind_annotate`.
"""

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (same folder: the cases and the token)

UPSTREAM, GATEWAY = 18180, 18183
CASES = {"plain": "", "chain": run.CHAIN, "rate-limit": run.rate_limit_plugins("local"),
         # A cached route answering from its store (bench/run's `gatehouse-cache`).
         "cache": run.CACHE,
         # Each plugin of the chain alone, with its chain config (rate-limit by consumer).
         **{f"{name}-alone": run.plugins_block(line) for name, line in run.CHAIN_PLUGINS.items()}}


def load(requests, conns, auth=True, pause=0.0):
    """`requests` keep-alive GETs over `conns` connections; fails on a non-200.
    Without `auth`, no token (a cached route's requests: see run.ANONYMOUS).
    With `pause`, each connection waits that long before each request (past
    the gateway's 0.5 s park delay, every request wakes a parked connection)."""
    per = requests // conns
    errors = []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", GATEWAY, timeout=60)
        for _ in range(per):
            time.sleep(pause)
            c.request("GET", "/", headers={"Authorization": run.AUTH.split(": ", 1)[1]} if auth else {})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
        c.close()

    threads = [threading.Thread(target=client) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. status {errors[0]}")
    return per * conns


def per_request(case, requests=4000, conns=16, keep=None, pause=0.0):
    """Instructions per request of `case` ("nginx" is nginx's own proxy worker)."""
    work = Path(tempfile.mkdtemp(prefix="gatehouse-profile-"))
    (work / "logs").mkdir()
    out = work / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
                f"--callgrind-out-file={out}"]
    procs = [subprocess.Popen(["nginx", "-p", str(work), "-c", str(upstream_conf(work))])]
    try:
        if case == "nginx":
            # One process (no master) so that callgrind sees the worker itself.
            argv = [*valgrind, "nginx", "-p", str(work), "-c", str(nginx_proxy_conf(work))]
        else:
            shutil.copytree(run.PLUGINS, work / "plugins")
            (work / "gw.yaml").write_text(
                run.gatehouse_config(GATEWAY, UPSTREAM, run.PORTS["redis"], "", CASES[case]))
            argv = [*valgrind, str(run.GATEHOUSE), "run", "-c", str(work / "gw.yaml")]
        proxy = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={"GATEHOUSE_LOG": "warn", "PATH": "/usr/sbin:/usr/bin:/bin",
                                      # Allocator options, for trying them without a rebuild.
                                      **{k: v for k, v in os.environ.items() if k.startswith("MIMALLOC_")}})
        procs.append(proxy)
        run.wait_http(f"http://127.0.0.1:{GATEWAY}/", timeout=120)
        auth = case != "cache"
        load(800, conns, auth)  # warm-up: pools, instances, caches
        subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, capture_output=True)
        n = load(requests, conns, auth, pause)
        subprocess.run(["callgrind_control", "-d", str(proxy.pid)], check=True, capture_output=True)
        dumps = sorted(work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dumps[-1], keep / f"callgrind.{case}")
        return summary(dumps[-1]) / n
    finally:
        run.stop_all(procs, timeout=30)
        time.sleep(0.2)
        shutil.rmtree(work, ignore_errors=True)


def upstream_conf(work):
    """The `return 200` upstream every case proxies to (`bench/run`'s own)."""
    conf = work / "up.conf"
    conf.write_text(f"worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/logs/up.err warn;\n"
                    "events { worker_connections 4096; }\n"
                    f"http {{ access_log off; {run.upstream_server(UPSTREAM)} }}\n")
    return conf


def nginx_proxy_conf(work):
    """The nginx proxy `bench/run` measures, in one process (no master)."""
    conf = work / "proxy.conf"
    conf.write_text(f"master_process off; daemon off; pid {work}/proxy.pid; error_log {work}/logs/proxy.err warn;\n"
                    "events { worker_connections 4096; }\n"
                    f"http {{ access_log off; {run.nginx_proxy_server(GATEWAY, UPSTREAM)} }}\n")
    return conf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="*", default=["plain"], choices=sorted(CASES) + ["nginx"])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--keep", type=Path, help="keep the callgrind output in this folder")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds each connection waits before each request (at most 5)")
    args = ap.parse_args()
    pause = min(max(args.pause, 0.0), 5.0)
    for case in args.cases:
        per = per_request(case, args.requests, args.conns, args.keep, pause)
        sent = args.requests // args.conns * args.conns
        after = f", {pause} s before each" if pause else ""
        print(f"{case}: {per / 1000:.1f}k instructions per request ({sent} requests, {args.conns} connections{after})")


def summary(dump):
    """The total instruction count of a callgrind dump (its `summary:` or `totals:` line)."""
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


if __name__ == "__main__":
    main()
