"""Slow clients against one worker: slowhttptest's slow headers (slowloris, -H) and slow body (-B) hold
--connections connections while a normal client asks every 50 ms on a new connection. Prints, per server
and mode, how many answers the normal client got, how many failed or took over 100 ms, its p50, p99 and
slowest answer, how long its slowest failure took to fail (a refusal at accept is quick; a connection left
in the listen queue waits for the 2 s timeout), and how long the server's worker and the normal client
waited for a CPU (the neighbours' share of the figures).

    python benchmarks/slow_clients.py                         # fastcluster and nginx, -H and -B
    python benchmarks/slow_clients.py --connections 2000 --duration 10 --rounds 3 --servers fastcluster
    python benchmarks/slow_clients.py --limit-connections 1000   # both servers capped at 1000 connections

Fair by construction: the server runs on one CPU (--server-cpu, the last allowed one by default),
slowhttptest and the normal client on another (--client-cpu); the servers take turns, mode by mode, for
--rounds rounds, so both meet the same neighbours; nginx gets fastcluster's default timeouts (a head within
10 s, a body pause up to 30 s, idle keep-alive 5 s) and `worker_connections` equal to --limit-connections
(4096 without it), so both do the same work when slow clients time out.

Needs slowhttptest (apt-get install slowhttptest); nginx is skipped when missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import free_port, stop, wait_until_answering  # noqa: E402
from servers import Fastcluster, Nginx, Scenario  # noqa: E402

SCENARIO = Scenario("slow-clients")
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
SLOW = 0.1
PROBE_EVERY = 0.05
NGINX_TIMEOUTS = "\n  client_header_timeout 10s;\n  client_body_timeout 30s;\n  keepalive_timeout 5s;"


def ask(port: int) -> tuple[float, bool]:
    """Seconds until a new connection had its whole answer or failed (refused, closed, reset, or nothing
    within 2 s), and whether it was answered."""
    started = time.perf_counter()
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(REQUEST)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        pass
    return time.perf_counter() - started, answer.startswith(b"HTTP/1.1 200 ")


def cpu_wait(task: str) -> float:
    """Seconds the task has waited on a run queue (the second field of its schedstat)."""
    try:
        return int(Path(f"/proc/{task}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def worker_of(server: subprocess.Popen) -> str:
    """The serving process: the master's only child (fastcluster's worker, nginx's worker)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return children[0] if len(children) == 1 else str(server.pid)


class Run:
    """One server and mode, over every round: the normal client's timings and the CPU waits."""

    def __init__(self) -> None:
        self.timings: list[tuple[float, bool]] = []
        self.seconds = 0.0
        self.server_wait = 0.0
        self.client_wait = 0.0

    def row(self, server: str, mode: str) -> str:
        answered = sorted(seconds for seconds, ok in self.timings if ok)
        failed = [seconds for seconds, ok in self.timings if not ok]
        slow = sum(1 for seconds in answered if seconds > SLOW)
        figures = [f"{answered[min(len(answered) - 1, int(q * len(answered)))] * 1000:.1f} ms"
                   for q in (0.5, 0.99, 1.0)] if answered else ["-"] * 3
        figures.append(f"{max(failed) * 1000:.1f} ms" if failed else "-")
        waits = [f"{wait / self.seconds * 1000:.0f} ms/s" for wait in (self.server_wait, self.client_wait)]
        return (f"| {server} | {mode} | {len(self.timings)} | {len(failed)} | {slow} | "
                + " | ".join(figures + waits) + " |")


def attack(mode: str, port: int, worker: str, args: argparse.Namespace, run: Run) -> None:
    """The normal client's timings from the moment slowhttptest starts until it has run --duration s."""
    command = ["taskset", "-c", str(args.client_cpu), "slowhttptest", mode, "-c", str(args.connections),
               "-r", str(max(args.connections // 4, 50)), "-i", "2", "-l", str(args.duration),
               "-u", f"http://127.0.0.1:{port}/", "-p", "2"]
    attacker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started, server_wait, client_wait = time.monotonic(), cpu_wait(worker), cpu_wait("thread-self")
    try:
        while time.monotonic() < started + args.duration:
            run.timings.append(ask(port))
            time.sleep(PROBE_EVERY)
        run.seconds += time.monotonic() - started
        run.server_wait += cpu_wait(worker) - server_wait
        run.client_wait += cpu_wait("thread-self") - client_wait
    finally:
        attacker.wait(timeout=args.duration + 30)


def main() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per server, mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", default="fastcluster,nginx")
    parser.add_argument("--modes", default="-H,-B")
    parser.add_argument("--limit-connections", type=int, default=0, metavar="N")
    parser.add_argument("--server-cpu", type=int, default=allowed[-1])
    parser.add_argument("--client-cpu", type=int, default=allowed[0])
    args = parser.parse_args()
    if not shutil.which("slowhttptest"):
        sys.exit("slowhttptest not found (apt-get install slowhttptest)")
    os.sched_setaffinity(0, {args.client_cpu})  # the normal client
    fastcluster, nginx = Fastcluster(), Nginx()
    fastcluster.cpu = args.server_cpu
    nginx.http_extra = NGINX_TIMEOUTS
    if args.limit_connections:
        fastcluster.extra = ["--limit-connections", str(args.limit_connections)]
        nginx.worker_connections = args.limit_connections
    peers = {name: peer for name, peer in (("fastcluster", fastcluster), ("nginx", nginx))
             if name in args.servers.split(",")}
    for name, peer in list(peers.items()):
        if peer.missing():
            print(f"{name} skipped: {peer.missing()}")
            del peers[name]
    modes = args.modes.split(",")
    runs: dict[tuple[str, str], Run] = defaultdict(Run)
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.rounds):
            for mode in modes:
                for name, peer in peers.items():
                    port = free_port()
                    launch = peer.launch(SCENARIO, port, Path(work))
                    command = ["taskset", "-c", str(args.server_cpu)] + launch.command
                    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    try:
                        wait_until_answering(port, SCENARIO, server)
                        attack(mode, port, worker_of(server), args, runs[name, mode])
                    finally:
                        stop(server)
    limit = f", at most {args.limit_connections} per worker" if args.limit_connections else ""
    print(f"{args.connections} slow connections{limit}; {args.rounds} rounds of {args.duration} s per server "
          f"and mode; a normal client every 50 ms; server on CPU {args.server_cpu}, clients on CPU "
          f"{args.client_cpu}\n")
    print("| server | mode | asked | failed | answered over 100 ms | p50 | p99 | slowest | slowest failure "
          "| worker waited for CPU | normal client waited for CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        for name in peers:
            print(runs[name, mode].row(name, mode))


if __name__ == "__main__":
    main()
