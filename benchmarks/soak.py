"""A soak: hours of traffic squeezed into minutes, watching the workers for leaks. Two servers run side by
side, the built-in responder and an ASGI app (benchmarks/apps/soak_asgi.py), one worker each. wrk drives
both with keep-alive connections (pipelined on the responder: /, /json, /bytes, /headers, shaped and echo
requests; one at a time on the app: hello, streamed, echoed, waiting answers), while a client of our own
mixes in what wrk never sends: malformed requests, connections cut mid-head, mid-body and mid-answer,
delayed answers, Connection: close, idle connections left to time out. Every few seconds each worker's RSS
and open descriptors are sampled. After the warm-up (the first quarter) RSS must stay flat (growth and the
least-squares slope are printed) and, once the load stops, the descriptors must return to where they were.

    python benchmarks/soak.py                                  # 10 minutes: about 10 million requests here
    python benchmarks/soak.py --duration 180 --interval 5      # a 3-minute run

Exit status 0 when both are flat, 1 when not. Needs wrk.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
# The servers' keep-alive timeout: once the load stops, what the clients left open is closed by it (plus
# one once-a-second sweep) at the latest.
KEEPALIVE_TIMEOUT = 5

# Pipelined on the built-in responder: each wrk request is these, sent at once.
BUILTIN_LUA = """
local paths = {"/", "/json", "/bytes/4096", "/headers", "/?size=700", "/status/404", "/", "/bytes/100"}
local pipeline = ""
for _, path in ipairs(paths) do pipeline = pipeline .. wrk.format("GET", path) end
pipeline = pipeline .. wrk.format("POST", "/echo", {["Content-Length"] = "11"}, "hello world")
init = function(args) end
request = function() return pipeline end
"""
# One at a time on the app, cycling through its answers.
APP_LUA = """
local requests = {
  wrk.format("GET", "/"), wrk.format("GET", "/stream"), wrk.format("GET", "/sleep"),
  wrk.format("POST", "/echo", {["Content-Length"] = "5"}, "hello"), wrk.format("GET", "/?q=1"),
}
local i = 0
request = function() i = i + 1; return requests[(i % #requests) + 1] end
"""
MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
]
GOOD = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"


@dataclass
class Target:
    name: str
    command: list[str]
    lua: str
    connections: int
    port: int = 0
    proc: subprocess.Popen | None = None
    pid: int = 0  # the worker's
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, RSS kB, fds)
    requests: int = 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_of(proc: subprocess.Popen, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}: {proc.stderr.read()}")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise SystemExit("the server started no worker")


def answers(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answers on port {port}")


def open_fds(target: Target) -> int:
    return len(os.listdir(f"/proc/{target.pid}/fd"))


def sample(target: Target, started: float) -> None:
    rss = int(Path(f"/proc/{target.pid}/statm").read_text().split()[1]) * PAGE_KB
    target.samples.append((time.monotonic() - started, rss, open_fds(target)))


def exchange(port: int, data: bytes, close_after: float | None = None) -> int:
    """Send data on a new connection and read until the server closes (or close_after seconds); returns
    the answers seen."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            received = b""
            deadline = time.monotonic() + (close_after if close_after is not None else 5)
            while time.monotonic() < deadline:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            return received.count(b"HTTP/1.1 ")
    except OSError:
        return 0


def chaos(port: int, stop: threading.Event, counts: list[int]) -> None:
    """What wrk never sends, one connection after another, with a rotating set of idle ones."""
    idle: list[socket.socket] = []
    rng = random.Random(1)
    while not stop.is_set():
        kind = rng.randrange(8)
        if kind == 0:
            counts[0] += exchange(port, rng.choice(MALFORMED))
        elif kind == 1:  # pipelined good requests, then a bad one
            counts[0] += exchange(port, GOOD * 5 + rng.choice(MALFORMED))
        elif kind == 2:  # cut mid-head, mid-body, mid-answer
            cut = rng.choice([b"GET / HTTP/1.1\r\nHo",
                              b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab",
                              b"GET /bytes/5000000 HTTP/1.1\r\nHost: a\r\n\r\n"])
            counts[0] += exchange(port, cut, close_after=0.01)
        elif kind == 3:  # a delayed answer, sometimes abandoned before it comes
            counts[0] += exchange(port, b"GET /delay/0.02 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                                  close_after=rng.choice([0.005, 1.0]))
        elif kind == 4:
            counts[0] += exchange(port, b"GET /json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        elif kind == 5:  # idle keep-alive connections, closed by us or left to the server's timeout
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(GOOD)
                sock.recv(65536)
                counts[0] += 1
                idle.append(sock)
            except OSError:
                pass
            if len(idle) > 50:
                idle.pop(rng.randrange(len(idle))).close()
        elif kind == 6:  # a head in trickles
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    for piece in (b"GET /json HT", b"TP/1.1\r\nHo", b"st: a\r\nConnection: close\r\n\r\n"):
                        sock.sendall(piece)
                        time.sleep(0.002)
                    counts[0] += sock.recv(65536).count(b"HTTP/1.1 ")
            except OSError:
                pass
        else:  # chunked body with trailers
            counts[0] += exchange(port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    for sock in idle:
        sock.close()


def slope_kb_per_minute(points: list[tuple[float, int]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def run(duration: float, interval: float, rss_bound_mb: float, connections: int) -> int:
    builtin_port, app_port = free_port(), free_port()
    base = [sys.executable, "-m", "fastcluster", "serve", "--workers", "1", "--log-level", "warning",
            "--keepalive-timeout", str(KEEPALIVE_TIMEOUT), "--header-timeout", "3", "--body-timeout", "3"]
    targets = [
        Target("builtin", base + ["--port", str(builtin_port)], BUILTIN_LUA, connections, builtin_port),
        Target("asgi", base + ["--port", str(app_port), "soak_asgi:app", "--app-dir", str(APPS)], APP_LUA,
               max(connections // 2, 1), app_port),
    ]
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    stop = threading.Event()
    counts = [0]
    wrks: list[tuple[Target, subprocess.Popen]] = []
    try:
        for target in targets:
            target.proc = subprocess.Popen(target.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                           text=True, start_new_session=True)
        for target in targets:
            answers(target.port)
            target.pid = worker_of(target.proc)
        started = time.monotonic()
        for target in targets:
            sample(target, started)
            script = work / f"{target.name}.lua"
            script.write_text(target.lua)
            wrks.append((target, subprocess.Popen(
                ["wrk", "-t1", f"-c{target.connections}", f"-d{max(int(duration), 1)}s", "-s", str(script),
                 f"http://127.0.0.1:{target.port}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)))
        chaos_thread = threading.Thread(target=chaos, args=(builtin_port, stop, counts), daemon=True)
        chaos_thread.start()
        while time.monotonic() - started < duration:
            time.sleep(min(interval, max(duration - (time.monotonic() - started), 0.1)))
            for target in targets:
                sample(target, started)
        stop.set()
        chaos_thread.join(30)
        for target, proc in wrks:
            output, _ = proc.communicate(timeout=60)
            found = re.search(r"(\d+) requests in", output)
            target.requests = int(found.group(1)) if found else 0
            if target.name == "builtin":
                target.requests = target.requests * 9 + counts[0]  # 9 requests per pipelined wrk request
        settled_by = time.monotonic() + KEEPALIVE_TIMEOUT + 1
        while (time.monotonic() < settled_by
               and any(open_fds(target) > target.samples[0][2] for target in targets)):
            time.sleep(0.1)
        for target in targets:
            sample(target, started)
    finally:
        stop.set()
        statuses = []
        for target in targets:
            if target.proc is not None and target.proc.poll() is None:
                target.proc.send_signal(signal.SIGTERM)
            try:
                statuses.append((target, target.proc.wait(30), target.proc.stderr.read()))
            except subprocess.TimeoutExpired:
                os.killpg(target.proc.pid, signal.SIGKILL)
                statuses.append((target, -9, ""))
        shutil.rmtree(work, ignore_errors=True)
    return report(targets, statuses, duration, rss_bound_mb)


def report(targets: list[Target], statuses: list, duration: float, rss_bound_mb: float) -> int:
    flat = True
    total = sum(target.requests for target in targets)
    print(f"{total} requests in {duration:.0f} s ({total / duration:.0f}/s), RSS bound {rss_bound_mb} MB "
          f"after the warm-up ({duration / 4:.0f} s)\n")
    print("| server | requests | RSS start → warm → end (MB) | growth after warm-up | slope "
          "| fds start / peak / after | exit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for target, status, stderr in statuses:
        samples = target.samples[:-1]  # the last one is after the load stopped
        warm = [s for s in samples if s[0] >= duration / 4] or samples[-1:]
        growth = (warm[-1][1] - warm[0][1]) / 1024
        slope = slope_kb_per_minute([(t, rss) for t, rss, _ in warm])
        fds_start, fds_after = target.samples[0][2], target.samples[-1][2]
        peak = max(fds for _, _, fds in target.samples)
        leaks = "still counted" in stderr
        ok = growth <= rss_bound_mb and fds_after <= fds_start and status == 0 and not leaks
        flat = flat and ok
        print(f"| {target.name} | {target.requests} | {target.samples[0][1] / 1024:.1f} → "
              f"{warm[0][1] / 1024:.1f} → {warm[-1][1] / 1024:.1f} | {growth:+.2f} MB | {slope:+.0f} kB/min "
              f"| {fds_start} / {peak} / {fds_after} | {status}{' (counters not zero)' if leaks else ''} |")
    print("\nflat" if flat else "\nNOT flat")
    return 0 if flat else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples (default 5)")
    parser.add_argument("--rss-bound", type=float, default=2.0,
                        help="MB the RSS may grow after the warm-up (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's connections to the responder")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")
    sys.exit(run(args.duration, args.interval, args.rss_bound, args.connections))


if __name__ == "__main__":
    main()
