#!/usr/bin/env python3
"""Scaling with workers: gatehouse `workers: N` against nginx `worker_processes N`.

Each proxy forwards to an nginx `return 200` upstream (two workers) with
upstream keep-alive. wrk (two threads, 64 connections) sends keep-alive GETs.
Nothing is pinned: on this 2-core machine the proxy's workers, the upstream
and the load generator share both cores, as they would on a small host, so
the figures are the proxies' efficiency under that contention (req/s, and
CPU time per request summed over every worker), not linear scaling. Rounds
are interleaved so that a noisy neighbour hits every target alike. Loopback
only; every load run is bounded by its duration.

    bench/multicore.py [--workers 1 2] [--rounds 3] [--seconds 3]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (same folder: servers, config, wrk parsing)

UP, NGINX, GH = 18280, 18281, 18282


def cpu_ticks(pids):
    return sum(run.cpu_ticks(p) for p in pids)


def wrk(port, seconds):
    """wrk -t2 -c64, not pinned (bench/run's wrk and parsing)."""
    return run.wrk(f"http://127.0.0.1:{port}/", seconds, conns=64, threads=2, cpu=None)


def nginx(work, name, workers, server):
    conf = work / f"{name}.conf"
    conf.write_text(f"worker_processes {workers}; daemon off; pid {work}/{name}.pid; "
                    f"error_log {work}/logs/{name}.err warn;\n"
                    "events { worker_connections 4096; }\n"
                    f"http {{ access_log off; {server} }}\n")
    return subprocess.Popen(["nginx", "-p", str(work), "-c", str(conf)])


def worker_pids(master, expected, deadline=10):
    end = time.time() + deadline
    while time.time() < end:
        kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        if len(kids) >= expected:
            return [int(k) for k in kids]
        time.sleep(0.05)
    raise RuntimeError("nginx workers did not start")


def gatehouse(work, workers):
    conf = work / f"gh{workers}.yaml"
    text = run.gatehouse_config(GH + workers, UP, run.PORTS["redis"], "", "")
    conf.write_text(text.replace("workers: 1", f"workers: {workers}"))
    return subprocess.Popen([str(run.GATEHOUSE), "run", "-c", str(conf)], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"GATEHOUSE_LOG": "warn", "PATH": "/usr/sbin:/usr/bin:/bin"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatehouse-multicore-"))
    (work / "logs").mkdir()
    procs = [nginx(work, "upstream", 2, run.upstream_server(UP))]
    targets = {}  # name -> (port, pids)
    try:
        for n in args.workers:
            p = nginx(work, f"nginx{n}", n, run.nginx_proxy_server(NGINX + 10 * n, UP))
            procs.append(p)
            targets[f"nginx, {n} worker(s)"] = (NGINX + 10 * n, worker_pids(p.pid, n))
            g = gatehouse(work, n)
            procs.append(g)
            targets[f"gatehouse, workers: {n}"] = (GH + n, [g.pid])
        for port, _ in targets.values():
            run.wait_http(f"http://127.0.0.1:{port}/", timeout=30)
            wrk(port, 1)  # warm-up: pools on both sides
        runs = {t: [] for t in targets}
        for _ in range(args.rounds):
            for t, (port, pids) in targets.items():
                c0 = cpu_ticks(pids)
                r = wrk(port, args.seconds)
                r["cpu_us"] = (cpu_ticks(pids) - c0) / run.CLK_TCK * 1e6 / max(r["total"], 1)
                runs[t].append(r)
    finally:
        run.stop_all(procs)
    rows = {t: {"rps": statistics.median(r["rps"] for r in rs),
                "spread": (max(r["rps"] for r in rs) - min(r["rps"] for r in rs)) / statistics.median(r["rps"] for r in rs),
                "cpu_us": statistics.median(r["cpu_us"] for r in rs),
                "failed": sum(r["failed"] for r in rs)} for t, rs in runs.items()}
    print(f"{args.rounds} interleaved rounds x {args.seconds} s, wrk -t2 -c64, nothing pinned, "
          f"upstream nginx with 2 workers; load average {open('/proc/loadavg').read().split()[0]}")
    print("| target | req/s (median) | spread | CPU µs/req (all workers) | failed |")
    print("|---|---:|---:|---:|---:|")
    for t, r in rows.items():
        print(f"| {t} | {r['rps']:.0f} | {r['spread'] * 100:.1f}% | {r['cpu_us']:.1f} | {r['failed']} |")
    for n in args.workers:
        g, x = rows[f"gatehouse, workers: {n}"], rows[f"nginx, {n} worker(s)"]
        print(f"- {n} worker(s): gatehouse / nginx req/s {g['rps'] / x['rps']:.2f}x, "
              f"CPU per request {g['cpu_us'] / x['cpu_us']:.2f}x")
    if 1 in args.workers and 2 in args.workers:
        for name in ("gatehouse, workers: {}", "nginx, {} worker(s)"):
            one, two = rows[name.format(1)], rows[name.format(2)]
            print(f"- {name.format('N').split(',')[0]}: 2 workers / 1 worker req/s {two['rps'] / one['rps']:.2f}x")


if __name__ == "__main__":
    main()
