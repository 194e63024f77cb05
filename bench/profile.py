#!/usr/bin/env python3
"""Instructions per request, the figure that does not move with a noisy VM.

Runs the release gateway under `valgrind --tool=callgrind` in front of an nginx
`return 200` upstream, warms it up, zeroes the counters, sends a fixed number of
keep-alive requests and divides the instructions counted (user space, every
thread) by that number. Cases are the ones `bench/run` measures by wall clock.

    bench/profile [plain|chain|rate-limit] [--requests N] [--keep DIR]

`--keep DIR` leaves the callgrind output there for `callgrind_annotate`.
"""

import argparse
import http.client
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
CASES = {"plain": "", "chain": run.CHAIN, "rate-limit": run.rate_limit_plugins("local")}
# Each plugin of the chain alone (the chain's own config lines).
for line in run.CHAIN.splitlines()[1:]:
    CASES[line.split("name: ", 1)[1].split(",", 1)[0]] = "    plugins:\n" + line + "\n"


def load(requests, conns):
    """`requests` keep-alive GETs over `conns` connections; fails on a non-200."""
    per = requests // conns
    errors = []

    def client():
        c = http.client.HTTPConnection("127.0.0.1", GATEWAY, timeout=60)
        for _ in range(per):
            c.request("GET", "/", headers={"Authorization": run.AUTH.split(": ", 1)[1]})
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", nargs="?", default="plain", choices=sorted(CASES))
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--keep", type=Path, help="keep the callgrind output in this folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatehouse-profile-"))
    (work / "logs").mkdir()
    shutil.copytree(run.PLUGINS, work / "plugins")
    (work / "up.conf").write_text(
        f"worker_processes 1; daemon off; pid {work}/up.pid; error_log {work}/logs/up.err warn;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; server {{ listen 127.0.0.1:{UPSTREAM}; keepalive_requests 1000000;"
        ' location / { return 200 "ok"; } } }\n')
    (work / "gw.yaml").write_text(run.gatehouse_config(GATEWAY, UPSTREAM, 18186, "", CASES[args.case]))
    out = work / "callgrind.out"
    procs = [subprocess.Popen(["nginx", "-p", str(work), "-c", str(work / "up.conf")])]
    try:
        gw = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}", str(run.GATEHOUSE), "run",
             "-c", str(work / "gw.yaml")], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={"GATEHOUSE_LOG": "warn", "PATH": "/usr/bin:/bin"})
        procs.append(gw)
        run.wait_http(f"http://127.0.0.1:{GATEWAY}/", timeout=120)
        load(800, args.conns)  # warm-up: pools, instances, caches
        subprocess.run(["callgrind_control", "-z", str(gw.pid)], check=True, capture_output=True)
        n = load(args.requests, args.conns)
        subprocess.run(["callgrind_control", "-d", str(gw.pid)], check=True, capture_output=True)
        dumps = sorted(work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        total = summary(dumps[-1])
        print(f"{args.case}: {total / n / 1000:.1f}k instructions per request ({n} requests, {args.conns} connections)")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dumps[-1], args.keep / f"callgrind.{args.case}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        time.sleep(0.2)
        shutil.rmtree(work, ignore_errors=True)


def summary(dump):
    """The total instruction count of a callgrind dump (its `summary:` or `totals:` line)."""
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


if __name__ == "__main__":
    main()
