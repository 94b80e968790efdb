"""Memory per idle keep-alive connection: opens N connections to one worker of each server, each sending one
request and reading its answer, then leaves them all idle; the worker's private dirty memory (smaps_rollup,
memory the process wrote: its heap, not shared pages) before and after, divided by N, is the user-space
cost of one idle connection. Then a new client must still get its answer, and a sample of the idle ones a
second one. Prints a table and the limits used.

    python benchmarks/idle_connections.py                                  # 100000 connections, every server
    python benchmarks/idle_connections.py --connections 20000 --servers builtin,asgi

Loopback gives about 28k ephemeral ports per source address, so the connections come from 127.1.0.1,
127.1.0.2, ... (bound before connect, with IP_BIND_ADDRESS_NO_PORT so the port is chosen per destination).
Every connection is a descriptor at both ends and RLIMIT_NOFILE counts per process: the limit is raised to
fit one worker's share (hard too, which needs CAP_SYS_RESOURCE); when the hard limit cannot be raised,
the connections are spread over enough server workers and client processes to stay under it. Servers:
builtin (fastcluster's responder), asgi (the hello ASGI app on fastcluster), nginx, uvicorn; each with
the same worker count, a keep-alive timeout longer than the run, and the figure is the sum over its
workers.
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing
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
# Source addresses 127.1.0.1, 127.1.0.2, ...: all of 127/8 is loopback, and these are out of the way of
# servers and tests binding 127.0.0.x while the run holds their ephemeral ports.
SOURCE_PREFIX = "127.1.0."
SPARE_FDS = 2000  # descriptors a process needs besides its connections, and room for uneven spreading
IN_FLIGHT = 500  # connections being opened at once
IP_BIND_ADDRESS_NO_PORT = 24
KEEPALIVE = 900  # seconds: longer than any run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(server: str, port: int, work: Path, connections: int, workers: int) -> list[str] | None:
    # --header-timeout as nginx's client_header_timeout: a loaded client may be slow to send after connecting.
    fastcluster = [sys.executable, "-m", "fastcluster", "serve", "--port", str(port), "--workers",
                   str(workers), "--log-level", "warning", "--keepalive-timeout", str(KEEPALIVE),
                   "--backlog", "4096", "--header-timeout", "60"]
    if server == "builtin":
        return fastcluster
    if server == "asgi":
        return fastcluster + ["hello_asgi:app", "--app-dir", str(APPS), "--interface", "asgi"]
    if server == "nginx":
        if not shutil.which("nginx"):
            return None
        config = work / "nginx.conf"
        per_worker = connections // workers + SPARE_FDS
        config.write_text(f"""worker_processes {workers};
worker_rlimit_nofile {per_worker};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections {per_worker}; }}
http {{
  access_log off;
  keepalive_timeout {KEEPALIVE}s;
  keepalive_requests 100000000;
  server {{ listen 127.0.0.1:{port} backlog=4096 reuseport;
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
        return [sys.executable, "-m", "uvicorn", "hello_asgi:app", "--app-dir", str(APPS), "--port",
                str(port), "--http", "httptools", "--loop", loop, "--no-access-log", "--log-level", "warning",
                "--timeout-keep-alive", str(KEEPALIVE), "--backlog", "4096", "--workers", str(workers)]
    raise SystemExit(f"unknown server {server!r}")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def worker_pids(proc: subprocess.Popen, server: str) -> list[int]:
    """The processes that hold the connections: the children (fastcluster's and nginx's workers,
    uvicorn's when it has several), or the server itself (uvicorn with one worker)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [int(pid) for pid in children] or [proc.pid]


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


def open_idle(port: int, count: int, first: int) -> list[socket.socket]:
    """count connections, each having sent one request and read its answer, left open; first: the index
    of the first (it chooses the source address)."""
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
            sock.bind((f"{SOURCE_PREFIX}{1 + (first + started) // PER_SOURCE}", 0))
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


def client(port: int, count: int, first: int, pipe) -> None:
    """A client process: opens its share of the connections, says so, then on request asks a sample of
    them again, and closes them when told."""
    try:
        sockets = open_idle(port, count, first)
    except (RuntimeError, OSError) as exc:
        pipe.send(str(exc))
        return
    pipe.send("ready")
    pipe.send(ask_again(sockets, int(pipe.recv())))
    pipe.recv()
    close_all(sockets)


def open_spread(port: int, connections: int, processes: int) -> list:
    """Open the connections from several client processes (RLIMIT_NOFILE is per process); returns their
    pipes once every one holds its share."""
    share = math.ceil(connections / processes)
    pipes = []
    for index in range(processes):
        mine, theirs = multiprocessing.Pipe()
        count = min(share, connections - index * share)
        multiprocessing.Process(target=client, args=(port, count, index * share, theirs), daemon=True).start()
        pipes.append(mine)
    failures = [answer for answer in (pipe.recv() for pipe in pipes) if answer != "ready"]
    if failures:
        for pipe in pipes:
            pipe.close()
        raise RuntimeError(failures[0])
    return pipes


def measure(server: str, connections: int, workers: int, clients: int, work: Path) -> dict:
    port = free_port()
    command = launch(server, port, work, connections, workers)
    if command is None:
        return {"server": server, "skipped": "not installed"}
    proc = subprocess.Popen(command, cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    pipes: list = []
    try:
        wait_answering(port, proc)
        for _ in range(50):  # the first requests load what every later one uses
            ask(port)
        time.sleep(0.5)
        pids = worker_pids(proc, server)
        before = private_dirty_kb(pids)
        fds_before = open_fds(pids)
        started = time.monotonic()
        pipes = open_spread(port, connections, clients)
        opening = time.monotonic() - started
        time.sleep(2.5)  # fastcluster lets go of an idle connection's parser after a second idle (its sweep)
        after = private_dirty_kb(pids)
        fds = open_fds(pids) - fds_before
        new_client = ask(port)
        for pipe in pipes:
            pipe.send(100 // clients)
        again = sum(pipe.recv() for pipe in pipes)
        return {"server": server, "connections": connections, "bytes": (after - before) * 1024 / connections,
                "before_mb": before / 1024, "after_mb": after / 1024, "fds": fds, "open_s": opening,
                "new_client": new_client, "again": again, "asked_again": 100 // clients * clients,
                "workers": workers}
    except RuntimeError as exc:
        return {"server": server, "skipped": str(exc)}
    finally:
        for pipe in pipes:
            pipe.send("close")
        for child in multiprocessing.active_children():  # interrupted while opening: they were not told
            child.join(30)
            child.terminate()
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if server == "nginx" else signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def raise_limit(wanted: int) -> str:
    """Raise this process's open-files limit (soft and hard, inherited by the servers and the clients)
    towards wanted; says what happened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return f"RLIMIT_NOFILE {soft}/{hard}"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return f"RLIMIT_NOFILE raised from {soft}/{hard} to {wanted}/{max(hard, wanted)}"
    except (ValueError, OSError) as exc:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return f"RLIMIT_NOFILE hard {hard} could not be raised to {wanted} ({exc}): soft raised to {hard}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100000)
    parser.add_argument("--servers", default="builtin,asgi,nginx,uvicorn")
    parser.add_argument("--workers", type=int, default=0,
                        help="server workers (default: 1, or as many as the open files limit needs)")
    args = parser.parse_args()
    said = raise_limit(args.connections + SPARE_FDS)
    room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - SPARE_FDS
    # Workers share the connections unevenly (the kernel's reuseport hash): leave a quarter spare.
    workers = args.workers or math.ceil(args.connections / (room * 3 // 4))
    clients = math.ceil(args.connections / room)
    sources = (args.connections + PER_SOURCE - 1) // PER_SOURCE
    print(f"limits: {said} (fs.nr_open {Path('/proc/sys/fs/nr_open').read_text().strip()}); "
          f"{sources} source addresses {SOURCE_PREFIX}1..{SOURCE_PREFIX}{sources}, {PER_SOURCE} connections "
          f"each (ephemeral ports "
          f"{' to '.join(Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split())}); "
          f"somaxconn {Path('/proc/sys/net/core/somaxconn').read_text().strip()}; {workers} server workers, "
          f"{clients} client processes", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for server in args.servers.split(","):
            print(f"{server}: opening {args.connections} idle connections ...", file=sys.stderr, flush=True)
            rows.append(measure(server, args.connections, workers, clients, Path(work)))
    print("\n| server | idle connections | bytes per connection | worker private dirty before → after "
          "| fds added | new client | idle ones asked again | open time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['server']} | skipped: {row['skipped']} | | | | | | |")
            continue
        print(f"| {row['server']} | {row['connections']} | {row['bytes']:.0f} | {row['before_mb']:.1f} → "
              f"{row['after_mb']:.1f} MB | {row['fds']} | {row['new_client']} | "
              f"{row['again']}/{row['asked_again']} | {row['open_s']:.1f} s |")


if __name__ == "__main__":
    main()
