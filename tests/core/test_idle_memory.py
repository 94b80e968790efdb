"""What an idle keep-alive connection costs a worker in user-space memory: no parser, no app state, no buffers
between requests (benchmarks/idle_connections.py measures it against nginx and uvicorn)."""

from __future__ import annotations

import resource
import socket
from pathlib import Path

import pytest

from tests.app.client import APPS
from tests.conftest import read_responses, wait_until

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
CONNECTIONS = 3000


def private_dirty(pid: int) -> int:
    """Bytes the process has written of its own memory (its heap and stacks, not shared pages)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Private_Dirty in smaps_rollup")


@pytest.fixture
def descriptors():
    """Room for the test's own end of the connections (the soft limit, up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def idle_connections(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(GET)
        [(status, _, _)] = read_responses(sock, 1)
        assert status == 200
        held.append(sock)
    return held


def bytes_per_idle_connection(server, bound: int) -> float:
    [worker] = server.workers()
    held = idle_connections(server.port, 100)  # what the first connections make once (lists, pools)
    before = private_dirty(worker)
    held += idle_connections(server.port, CONNECTIONS)
    # An app connection lets go of its per-request state after a second idle (the once-a-second sweep).
    wait_until(lambda: (private_dirty(worker) - before) / CONNECTIONS <= bound, timeout=5, interval=0.5)
    cost = (private_dirty(worker) - before) / CONNECTIONS
    with server.connect() as sock:  # a new client is still answered, and so is an idle one
        sock.sendall(GET)
        assert read_responses(sock, 1)[0][0] == 200
    held[-1].sendall(GET)
    assert read_responses(held[-1], 1)[0][0] == 200
    for sock in held:
        sock.close()
    return cost


def test_an_idle_connection_to_the_builtin_responder_holds_no_parser(serve, descriptors):
    server = serve("--keepalive-timeout", "60")
    # The connection object alone (about 340 bytes; with a parser and its callbacks it was over 2 KB).
    assert bytes_per_idle_connection(server, 1024) <= 1024


def test_an_idle_app_connection_holds_no_request_and_no_task(serve, descriptors):
    server = serve("--keepalive-timeout", "60", "apps:hello", "--app-dir", APPS)
    # The connection, its adapter and the client's address until the sweep (it was 4.7 KB with the last
    # request's scope, the runner's Task and a parser).
    assert bytes_per_idle_connection(server, 2048) <= 2048
