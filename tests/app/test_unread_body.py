"""An app that answers without reading a large request body: the rest of the body is read and dropped,
so the connection carries the next request (reading had paused while the unread body piled up)."""

from __future__ import annotations

import socket

import pytest

from tests.app.client import APPS
from tests.conftest import http_exchange, read_responses

BODY = 3 * 1024 * 1024


APPS_THAT_IGNORE_BODIES = pytest.mark.parametrize("app, flags", [
    ("apps:ignores_body", ()), ("apps:wsgi_ignores_body", ("--threads", "2"))])


@APPS_THAT_IGNORE_BODIES
def test_next_request_is_answered_after_an_unread_body(serve, app, flags):
    server = serve(app, "--app-dir", APPS, *flags)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % BODY)
        sent = 0
        block = b"x" * 65536
        while sent < BODY:
            sock.sendall(block)
            sent += len(block)
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        responses = read_responses(sock, 2)
    assert [status for status, _, _ in responses] == [200, 200]
    assert [body for _, _, body in responses] == [b"ok", b"ok"]


@APPS_THAT_IGNORE_BODIES
def test_unread_body_over_the_limit_after_the_answer_closes_quietly(serve, app, flags):
    server = serve(app, "--app-dir", APPS, *flags, "--max-body", "100000")
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        [(status, _, body)] = read_responses(sock, 1)  # answered; the rest of the body is dropped as it comes
        assert (status, body) == (200, b"ok")
        try:
            for _ in range(8):
                sock.sendall(b"8000\r\n" + b"x" * 0x8000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed once the body broke the limit
        assert http_exchange(sock, b"") == b"", "the client had its answer: no 413 after it"
