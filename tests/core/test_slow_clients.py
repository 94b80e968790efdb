"""Slow clients (slowloris: heads that never end) hold connections open; the worker keeps answering everyone
else, and with --limit-connections the connections past the limit are closed as soon as accepted."""

from __future__ import annotations

import socket

from tests.conftest import read_responses, wait_until
from tests.core.test_connection_limit import served

SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: t\r\n"
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def start_slow_heads(server, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = server.connect()
        sock.sendall(SLOW_HEAD)
        held.append(sock)
    return held


def closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection; False while it is open and silent."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(timeout)


def answered(sock: socket.socket, data: bytes = GET) -> bool:
    sock.sendall(data)
    [(status, _, _)] = read_responses(sock, 1)
    return status == 200


def test_a_normal_client_is_answered_while_500_heads_trickle(serve):
    server = serve()
    held = start_slow_heads(server, 500)
    with server.connect() as sock:
        assert answered(sock)
    for sock in held:
        sock.sendall(b"X-Slow: 1\r\n")  # one more line each, the head still open
    with server.connect() as sock:
        assert answered(sock)
    assert not any(closed(sock) for sock in held)
    assert answered(held[0], b"\r\n")  # a slow head that ends is answered too
    for sock in held:
        sock.close()


def test_slow_heads_past_the_limit_are_closed_at_accept(serve):
    server = serve("--limit-connections", "100")
    held = start_slow_heads(server, 150)
    # The worker takes connections in the order they came: the first 100 it holds, the rest it closes at
    # once (which ones exactly can shift by the readiness check's connection, not how many).
    assert wait_until(lambda: sum(closed(sock) for sock in held) == 50, timeout=10)
    alive = [sock for sock in held if not closed(sock)]
    assert len(alive) == 100
    with server.connect() as extra:
        assert wait_until(lambda: closed(extra))
    assert answered(alive[0], b"\r\n")
    for sock in held:
        sock.close()
    assert wait_until(lambda: served(server))
