"""--limit-connections: past N open connections a worker closes new ones as soon as it accepts them."""

from __future__ import annotations

import re
import socket
import time

from tests.conftest import read_responses, wait_until

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def answered(sock: socket.socket) -> bool:
    sock.sendall(GET)
    [(status, _, _)] = read_responses(sock, 1)
    return status == 200


def served(server) -> bool:
    """True when a new connection gets its answer (False while the worker is still full)."""
    with server.connect() as sock:
        try:
            return answered(sock)
        except (AssertionError, OSError):
            return False


def closed_at_once(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        sock.sendall(GET)
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_connections_past_the_limit_are_closed_at_once(serve):
    server = serve("--limit-connections", "3")
    held = [server.connect() for _ in range(3)]
    assert all(answered(sock) for sock in held)
    with server.connect() as extra:
        assert closed_at_once(extra)
    held.pop().close()
    # The worker notices the close on its next read; then a new connection is served again.
    assert wait_until(lambda: served(server))
    for sock in held:
        assert answered(sock)
        sock.close()
    time.sleep(1.1)  # the refusals are logged once a second
    assert server.stop() == 0
    logged = r"refused \d+ connections in the last second: \d+ open, --limit-connections 3"
    assert re.search(logged, server.read_output())


def test_no_limit_by_default(serve):
    server = serve()
    held = [server.connect() for _ in range(50)]
    assert all(answered(sock) for sock in held)
    for sock in held:
        sock.close()
