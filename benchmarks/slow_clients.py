"""Slow clients against one worker: slowhttptest's slow headers (slowloris, -H) and slow body (-B) hold
--connections connections while a normal client asks every 50 ms on a new connection. Prints, per server
and mode, how many answers the normal client got, how many took over 100 ms or failed, and the slowest.

    python benchmarks/slow_clients.py                         # fastcluster and nginx, -H and -B, 15 s each
    python benchmarks/slow_clients.py --connections 2000 --duration 15 --servers fastcluster

Needs slowhttptest (apt-get install slowhttptest); nginx is skipped when missing.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import free_port, stop, wait_until_answering  # noqa: E402
from servers import Fastcluster, Nginx, Scenario  # noqa: E402

SCENARIO = Scenario("slow-clients")
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
SLOW = 0.1


def ask(port: int) -> float | None:
    """Seconds to a whole answer on a new connection, or None when there was none within 2 s."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(REQUEST)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return None
    return time.monotonic() - started if answer.startswith(b"HTTP/1.1 200 ") else None


def probe(port: int, until: float, timings: list[float | None]) -> None:
    while time.monotonic() < until:
        timings.append(ask(port))
        time.sleep(0.05)


def attack(mode: str, port: int, connections: int, duration: int) -> list[float | None]:
    command = ["slowhttptest", mode, "-c", str(connections), "-r", str(max(connections // 4, 50)), "-i", "2",
               "-l", str(duration), "-u", f"http://127.0.0.1:{port}/", "-p", "2"]
    attacker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timings: list[float | None] = []
    try:
        time.sleep(2)  # let the slow connections pile up first
        probe(port, time.monotonic() + duration - 2, timings)
    finally:
        attacker.wait(timeout=duration + 30)
    return timings


def report(server: str, mode: str, timings: list[float | None]) -> str:
    answered = [t for t in timings if t is not None]
    slow = sum(1 for t in answered if t > SLOW)
    slowest = f"{max(answered) * 1000:.1f} ms" if answered else "-"
    return (f"| {server} | {mode} | {len(timings)} | {len(timings) - len(answered)} | {slow} | {slowest} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--servers", default="fastcluster,nginx")
    parser.add_argument("--modes", default="-H,-B")
    args = parser.parse_args()
    if not shutil.which("slowhttptest"):
        sys.exit("slowhttptest not found (apt-get install slowhttptest)")
    peers = {"fastcluster": Fastcluster(), "nginx": Nginx()}
    print(f"{args.connections} slow connections, {args.duration} s; a normal client every 50 ms\n")
    print("| server | mode | asked | failed | over 100 ms | slowest |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as work:
        for name in args.servers.split(","):
            peer = peers[name]
            if peer.missing():
                print(f"| {name} | skipped: {peer.missing()} |")
                continue
            for mode in args.modes.split(","):
                port = free_port()
                launch = peer.launch(SCENARIO, port, Path(work))
                server = subprocess.Popen(launch.command, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
                try:
                    wait_until_answering(port, SCENARIO, server)
                    print(report(name, mode, attack(mode, port, args.connections, args.duration)), flush=True)
                finally:
                    stop(server)


if __name__ == "__main__":
    main()
