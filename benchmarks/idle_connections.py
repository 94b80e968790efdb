"""Memory per idle keep-alive connection: opens N connections to one worker of each server, each sending one
request and reading its answer, then leaves them all idle; the worker's private dirty memory (smaps_rollup,
memory the process wrote: its heap, not shared pages) before and after, divided by N, is the user-space
cost of one idle connection. Then a new client must still get its answer, and a sample of the idle ones a
second one. Prints a table and the limits used.

    python benchmarks/idle_connections.py                                  # 100000 connections, every server
    python benchmarks/idle_connections.py --connections 20000 --servers builtin,asgi

Loopback gives about 28k ephemeral ports per source address, so the connections come from 127.0.0.2,
127.0.0.3, ... (bound before connect, with IP_BIND_ADDRESS_NO_PORT so the port is chosen per destination).
The open-files limit (hard and soft) is raised to fit N plus a margin, which needs root beyond the hard
limit; servers inherit it. Servers: builtin (fastcluster's responder), asgi (the hello ASGI app on
fastcluster), nginx, uvicorn; each runs one worker with a keep-alive timeout longer than the run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
PER_SOURCE = 20000  # connections per source address, under the ~28k ephemeral ports
IN_FLIGHT = 500  # connections being opened at once
IP_BIND_ADDRESS_NO_PORT = 24
KEEPALIVE = 900  # seconds: longer than any run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(server: str, port: int, work: Path, connections: int) -> list[str] | None:
    fastcluster = [sys.executable, "-m", "fastcluster", "serve", "--port", str(port), "--workers", "1",
                   "--log-level", "warning", "--keepalive-timeout", str(KEEPALIVE), "--backlog", "4096"]
    if server == "builtin":
        return fastcluster
    if server == "asgi":
        return fastcluster + ["hello_asgi:app", "--app-dir", str(APPS), "--interface", "asgi"]
    if server == "nginx":
        if not shutil.which("nginx"):
            return None
        config = work / "nginx.conf"
        config.write_text(f"""worker_processes 1;
worker_rlimit_nofile {connections + 1000};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections {connections + 1000}; }}
http {{
  access_log off;
  keepalive_timeout {KEEPALIVE}s;
  keepalive_requests 100000000;
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "Hello, World!"; }} }}
}}
""")
        return ["nginx", "-c", str(config)]
    if server == "uvicorn":
        try:
            import uvicorn  # noqa: F401
        except ImportError:
            return None
        loop = "uvloop" if _importable("uvloop") else "asyncio"
        return [sys.executable, "-m", "uvicorn", "hello_asgi:app", "--app-dir", str(APPS), "--port", str(port),
                "--http", "httptools", "--loop", loop, "--no-access-log", "--log-level", "warning",
                "--timeout-keep-alive", str(KEEPALIVE), "--backlog", "4096"]
    raise SystemExit(f"unknown server {server!r}")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def worker_pids(proc: subprocess.Popen, server: str) -> list[int]:
    """The processes that hold the connections: the children (fastcluster's worker, nginx's worker), or
    the server itself (uvicorn with one worker)."""
    if server == "uvicorn":
        return [proc.pid]
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def private_dirty_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Private_Dirty:"):
                total += int(line.split()[1])
    return total


def open_fds(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def wait_answering(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}")
        if ask(port) == 200:
            return
        time.sleep(0.1)
    raise RuntimeError("did not answer")


def ask(port: int) -> int | None:
    """The status a new client gets for GET /, or None."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def answer_complete(data: bytes) -> bool:
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(data) - head_end - 4 >= int(value)
    return True


def open_idle(port: int, count: int) -> list[socket.socket]:
    """count connections, each having sent one request and read its answer, left open."""
    epoll = select.epoll()
    opened: list[socket.socket] = []
    waiting: dict[int, tuple[socket.socket, bytearray]] = {}
    started = 0
    deadline = time.monotonic() + max(120, count / 200)
    while len(opened) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(opened)} of {count} connections answered in time")
        while started < count and len(waiting) < IN_FLIGHT:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((f"127.0.0.{2 + started // PER_SOURCE}", 0))
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            waiting[sock.fileno()] = (sock, bytearray())
            epoll.register(sock.fileno(), select.EPOLLOUT)
            started += 1
        for fd, events in epoll.poll(1.0):
            sock, received = waiting[fd]
            if events & select.EPOLLOUT:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise RuntimeError(f"connect failed: {os.strerror(error)}")
                sock.send(REQUEST)
                epoll.modify(fd, select.EPOLLIN)
                continue
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a connection before answering")
            received += chunk
            if answer_complete(received):
                if not received.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"answered {bytes(received[:40])!r}")
                epoll.unregister(fd)
                del waiting[fd]
                opened.append(sock)
    epoll.close()
    return opened


def ask_again(sockets: list[socket.socket], sample: int) -> int:
    """How many of a sample of the idle connections answer a second request."""
    answered = 0
    for sock in random.sample(sockets, min(sample, len(sockets))):
        sock.setblocking(True)
        sock.settimeout(10)
        try:
            sock.sendall(REQUEST)
            received = bytearray()
            while not answer_complete(received):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            answered += received.startswith(b"HTTP/1.1 200")
        except OSError:
            pass
    return answered


def close_all(sockets: list[socket.socket]) -> None:
    reset = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")  # SO_LINGER 0: no TIME_WAIT left behind
    for sock in sockets:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
        except OSError:
            pass
        sock.close()


def measure(server: str, connections: int, work: Path) -> dict:
    port = free_port()
    command = launch(server, port, work, connections)
    if command is None:
        return {"server": server, "skipped": "not installed"}
    proc = subprocess.Popen(command, cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    sockets: list[socket.socket] = []
    try:
        wait_answering(port, proc)
        for _ in range(50):  # the first requests load what every later one uses
            ask(port)
        time.sleep(0.5)
        pids = worker_pids(proc, server)
        before = private_dirty_kb(pids)
        fds_before = open_fds(pids)
        started = time.monotonic()
        sockets = open_idle(port, connections)
        opening = time.monotonic() - started
        time.sleep(1.0)
        after = private_dirty_kb(pids)
        fds = open_fds(pids) - fds_before
        new_client = ask(port)
        again = ask_again(sockets, 100)
        return {"server": server, "connections": connections, "bytes": (after - before) * 1024 / connections,
                "before_mb": before / 1024, "after_mb": after / 1024, "fds": fds, "open_s": opening,
                "new_client": new_client, "again": again}
    except RuntimeError as exc:
        return {"server": server, "skipped": str(exc)}
    finally:
        close_all(sockets)
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if server == "nginx" else signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def raise_limit(connections: int) -> tuple[int, int]:
    """Raise this process's open-files limit (soft and hard, inherited by the servers) to fit the run."""
    wanted = connections + 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        except (ValueError, OSError) as exc:
            raise SystemExit(f"cannot raise the open files limit to {wanted} (hard {hard}): {exc}; "
                             "run as root or raise it first (prlimit, ulimit -Hn)") from exc
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100000)
    parser.add_argument("--servers", default="builtin,asgi,nginx,uvicorn")
    args = parser.parse_args()
    soft, hard = raise_limit(args.connections)
    sources = (args.connections + PER_SOURCE - 1) // PER_SOURCE
    print(f"limits: RLIMIT_NOFILE soft {soft} hard {hard} (fs.nr_open "
          f"{Path('/proc/sys/fs/nr_open').read_text().strip()}); {sources} source addresses 127.0.0.2.."
          f"127.0.0.{1 + sources}, {PER_SOURCE} connections each (ephemeral ports "
          f"{' to '.join(Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split())}); "
          f"somaxconn {Path('/proc/sys/net/core/somaxconn').read_text().strip()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for server in args.servers.split(","):
            print(f"{server}: opening {args.connections} idle connections ...", file=sys.stderr, flush=True)
            rows.append(measure(server, args.connections, Path(work)))
    print("\n| server | idle connections | bytes per connection | worker private dirty before → after "
          "| fds added | new client | idle ones asked again | open time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['server']} | skipped: {row['skipped']} | | | | | | |")
            continue
        print(f"| {row['server']} | {row['connections']} | {row['bytes']:.0f} | {row['before_mb']:.1f} → "
              f"{row['after_mb']:.1f} MB | {row['fds']} | {row['new_client']} | {row['again']}/100 | "
              f"{row['open_s']:.1f} s |")


if __name__ == "__main__":
    main()
