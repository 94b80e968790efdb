"""How app answers are framed on a kept-alive connection, over real sockets: HEAD and 304 answers that
declare a Content-Length and carry no body, error answers to HEAD (no body either), informational statuses
refused, and Upgrade requests answered as plain ones with their bodies read."""

from __future__ import annotations

import json

import pytest

from tests.app.client import APPS
from tests.conftest import http_exchange

CLOSE = b"GET /next HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def exchange(server, first: bytes) -> tuple[bytes, bytes]:
    """Send `first` and a GET behind it on one connection: (the first answer's head, all that follows it)."""
    with server.connect() as sock:
        reply = http_exchange(sock, first + CLOSE)
    head, rest = reply.split(b"\r\n\r\n", 1)
    return head + b"\r\n", rest


def bodiless_answer_then_next(server, first: bytes) -> bytes:
    """The head of the answer to `first`, checked to carry no body: the next answer follows it at once."""
    head, rest = exchange(server, first)
    assert rest.startswith(b"HTTP/1.1 "), f"a body after the head: {rest[:80]!r}"
    return head


@pytest.mark.parametrize("target, threads", [
    ("apps:broken", None), ("apps:wsgi_broken", "0"), ("apps:wsgi_broken", "2"),
])
def test_app_error_to_head_has_no_body(serve, target, threads):
    server = serve(target, "--app-dir", APPS, *(["--threads", threads] if threads else []))
    server.tracebacks_expected = True
    head = bodiless_answer_then_next(server, b"HEAD /raise HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and b"Content-Length: 21" in head
    assert b"Connection: close" not in head  # the framing holds: the connection is kept


def test_streamed_wsgi_error_to_head_has_no_body(serve):
    server = serve("wsgi_apps:bytes_not_iterable", "--app-dir", APPS)  # ?text: fails at the first piece
    head = bodiless_answer_then_next(server, b"HEAD /?text HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize("threads", ["0", "2"])
def test_wsgi_head_and_304_keep_the_declared_length(serve, threads):
    server = serve("wsgi_apps:declared_length", "--app-dir", APPS, "--threads", threads)
    head = bodiless_answer_then_next(server, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 5\r\n" in head
    head = bodiless_answer_then_next(server, b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 100000\r\n" in head
    head = bodiless_answer_then_next(server, b"GET /304 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304 ") and b"Content-Length: 5\r\n" in head
    head, rest = exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and rest.startswith(b"helloHTTP/1.1 200 OK")


def test_asgi_head_keeps_the_declared_length(serve):
    server = serve("asgi_apps:declared_length", "--app-dir", APPS)
    head = bodiless_answer_then_next(server, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 5\r\n" in head


def test_informational_status_from_an_app_is_an_error(serve):
    server = serve("asgi_apps:declared_length", "--app-dir", APPS)
    codes = (b"100", b"101", b"103")
    for code in codes:
        head, rest = exchange(server, b"GET /1xx?%s HTTP/1.1\r\nHost: t\r\n\r\n" % code)
        assert head.startswith(b"HTTP/1.1 500 ") and rest.startswith(b"Internal Server ErrorHTTP/1.1 200 OK")
    server.stop()
    for code in codes:
        assert f"status {code.decode()} is informational" in server.read_output()


def test_informational_status_from_a_wsgi_app_is_an_error(serve):
    server = serve("wsgi_apps:status_echo", "--app-dir", APPS)
    head, rest = exchange(server, b"GET /?103%20Early%20Hints HTTP/1.1\r\nHost: t\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ") and rest.startswith(b"Internal Server ErrorHTTP/1.1 200 OK")


UPGRADES = [b"Connection: upgrade\r\nUpgrade: websocket\r\n",
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"]
BODIES = [b"Content-Length: 11\r\n\r\nhello world",
          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"]


@pytest.mark.parametrize("target", ["asgi_apps:echo_body", "wsgi_apps:environ_echo"])
def test_upgrade_not_offered_reads_the_body_and_is_logged(serve, tmp_path, target):
    log = tmp_path / "access.log"
    server = serve(target, "--app-dir", APPS, "--access-log", str(log))
    answered = 0
    for upgrade in UPGRADES:
        for body in BODIES:
            with server.connect() as sock:
                reply = http_exchange(sock, b"POST /up HTTP/1.1\r\nHost: t\r\n" + upgrade + body)
            head, answer = reply.split(b"\r\n\r\n", 1)
            if target.startswith("asgi") and b"websocket" in upgrade:
                # ASGI apps take WebSocket handshakes, and one that is not a GET is refused, as uvicorn does.
                assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
                continue
            assert head.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in head, (upgrade, body)
            found = json.loads(answer)
            assert found.get("length", len(found.get("input", ""))) == 11, (upgrade, body)
            answered += 1
    server.stop()
    assert log.read_text().count('"POST /up HTTP/1.1" 200') == answered
