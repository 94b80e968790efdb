"""The ASGI extensions and framing rules over real sockets (apps in asgi_apps.py): http.response.pathsend,
http.response.trailers, Content-Length enforcement, bodiless statuses, a failure between start and body."""

import json
import os
import socket
import time

import pytest

from tests.app.client import (
    APPS,
    OVER_LIMIT,
    UNSPLITTABLE,
    assert_error_follows_first,
    fetch,
    gated_upload,
)
from tests.conftest import http_exchange, read_responses, wait_until

GET_CLOSE = b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"


def app(serve, target, *flags, **kwargs):
    return serve("--app-dir", APPS, f"asgi_apps:{target}", *flags, **kwargs)


def exchange(server, data: bytes) -> bytes:
    """Send data on a new connection and read until the server closes it."""
    with server.connect() as sock:
        return http_exchange(sock, data)


def read_responses_of(server, data: bytes, count: int = 2):
    with server.connect() as sock:
        sock.sendall(data)
        return read_responses(sock, count)


def split(reply: bytes) -> tuple[bytes, bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head, body


def assert_worker_lives(server, workers):
    assert fetch(server, "/ok")[0].status == 200
    assert server.workers() == workers


# ---- http.response.pathsend ----

def test_pathsend_is_announced_in_the_scope(serve_shared):
    server = app(serve_shared, "pathsend")
    extensions = json.loads(fetch(server, "/ext")[1])
    assert "http.response.pathsend" in extensions and "http.response.trailers" in extensions


def test_pathsend_sends_the_file_whole(serve_shared, tmp_path):
    server = app(serve_shared, "pathsend")
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_bytes(b"a small file\n")
    large.write_bytes(os.urandom(5 << 20))
    for path in (small, large):
        response, body = fetch(server, f"/file?{path}")
        assert response.status == 200
        assert response.getheader("content-length") == str(path.stat().st_size)
        assert response.getheader("content-type") == "application/octet-stream"
        assert body == path.read_bytes()
    response, body = fetch(server, f"/file?length={small.stat().st_size}&{small}")
    assert response.status == 200 and body == small.read_bytes()
    reply = exchange(server, b"HEAD /file?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % bytes(large))
    head, body = split(reply)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % (5 << 20) in head
    assert body == b""


def test_pathsend_keeps_the_connection_and_pipelined_answers_in_order(serve_shared, tmp_path):
    server = app(serve_shared, "pathsend")
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(3 << 20))
    with server.connect() as sock:
        sock.sendall(GET % (b"/file?" + bytes(large)) + GET % b"/ok")
        [(status, headers, body), second] = read_responses(sock, 2)
        assert status == 200 and body == large.read_bytes()
        assert second[0] == 200 and second[2] == b"ok"
        sock.sendall(GET % (b"/file?" + bytes(large)))
        assert read_responses(sock, 1)[0][2] == large.read_bytes()
        sock.sendall(GET_CLOSE % b"/ext")
        assert read_responses(sock, 1)[0][0] == 200


def test_answer_behind_a_file_still_waits_for_a_slow_client(serve_shared, tmp_path):
    server = app(serve_shared, "pathsend")
    large, progress = tmp_path / "large.bin", tmp_path / "progress"
    large.write_bytes(os.urandom(16 << 20))
    with server.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(GET % (b"/file?" + bytes(large)) + GET_CLOSE % (b"/stream?" + bytes(progress)))
        time.sleep(0.5)
        assert wait_until(lambda: progress.exists() and progress.read_text(), 2)
        assert int(progress.read_text()) < 100, \
            "send() did not wait while its answer queued behind the file"
        reply = http_exchange(sock, b"", timeout=10)
    head, rest = reply.split(b"\r\n\r\n", 1)
    assert rest[:16 << 20] == large.read_bytes()
    assert rest[16 << 20:].startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"0\r\n\r\n")
    assert rest.count(b"y" * 65536) == 320


def test_pathsend_refuses_a_relative_missing_or_irregular_path_with_500(serve, tmp_path):
    server = app(serve, "pathsend")
    workers = server.workers()
    small = tmp_path / "small.txt"
    small.write_bytes(b"12345")
    for target in (b"/file?small.txt", b"/file?" + bytes(tmp_path / "missing"), b"/file?" + bytes(tmp_path),
                   b"/file?length=9&" + bytes(small)):
        with server.connect() as sock:
            sock.sendall(GET % target)
            [(status, _, body)] = read_responses(sock, 1)
            assert status == 500, target
            sock.sendall(GET % b"/ok")  # the connection is still good
            assert read_responses(sock, 1)[0][2] == b"ok"
    assert_worker_lives(server, workers)
    server.stop()
    output = server.read_output()
    assert "absolute path" in output and "cannot open" in output and "the file has 5 bytes" in output
    assert "not a regular file" in output


# ---- http.response.trailers ----

def test_trailers_end_a_chunked_body(serve_shared):
    server = app(serve_shared, "trailers")
    with server.connect() as sock:
        sock.settimeout(5)
        sock.sendall(GET % b"/")
        reply = b""
        while not reply.endswith(b"\r\n\r\n") or reply.count(b"\r\n\r\n") < 2:
            piece = sock.recv(65536)
            assert piece, reply
            reply += piece
        head, body = split(reply)
        assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
        assert body == b"5\r\nhello\r\n5\r\nworld\r\n0\r\nx-first: 1\r\nx-checksum: abc\r\n\r\n"
        sock.sendall(GET_CLOSE % b"/?length")  # the connection goes on after the trailers
        [(status, headers, body)] = read_responses(sock, 1)
        assert status == 200 and body == b"helloworld"


def test_trailers_are_dropped_when_the_app_gave_a_content_length(serve_shared):
    server = app(serve_shared, "trailers")
    head, body = split(exchange(server, GET_CLOSE % b"/?length"))
    assert b"Content-Length: 10\r\n" in head and b"chunked" not in head
    assert body == b"helloworld"
    head, body = split(exchange(server, b"GET / HTTP/1.0\r\n\r\n"))  # no chunked coding in HTTP/1.0
    assert b"chunked" not in head and body == b"helloworld"


def test_invalid_trailer_is_logged_and_closes_the_connection(serve):
    server = app(serve, "trailers")
    workers = server.workers()
    reply = exchange(server, GET % b"/?bad" + GET % b"/")  # the server closes: the second is not answered
    head, body = split(reply)
    assert head.startswith(b"HTTP/1.1 200") and body.startswith(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n")
    assert b"bad name" not in reply and reply.count(b"HTTP/1.1") == 1
    assert not body.endswith(b"\r\n\r\n"), "an unfinished trailer section tells the client it was cut"
    assert_worker_lives(server, workers)
    server.stop()
    assert "invalid header name b'bad name'" in server.read_output()


# ---- Content-Length enforcement ----

@pytest.mark.parametrize("case, logged", [("over", "more body than its Content-Length 5"),
                                          ("under", "Content-Length 5 but 3 bytes of body")])
def test_body_that_does_not_match_its_content_length(serve, case, logged):
    server = app(serve, "wrong_length")
    workers = server.workers()
    target = b"/" + case.encode()
    [(status, _, _), (_, _, body)] = read_responses_of(server, GET % target + GET % b"/ok")
    assert status == 500 and body == b"01234", "nothing was sent yet: a 500, and the connection goes on"
    head, body = split(exchange(server, GET % (target + b"-split") + GET % b"/ok"))
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 5" in head
    assert body == b"012", "cut short and closed: no extra byte, no answer to the request behind it"
    assert_worker_lives(server, workers)
    server.stop()
    assert logged in server.read_output()


# ---- bodiless statuses ----

def test_204_has_neither_content_length_nor_body(serve_shared):
    server = app(serve_shared, "bodiless")
    for target in (b"/204?0", b"/204?5"):
        reply = exchange(server, GET % target + GET_CLOSE % b"/ok")
        first, rest = reply.split(b"\r\n\r\n", 1)
        assert first.startswith(b"HTTP/1.1 204") and b"Content-Length" not in first
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok")


def test_304_keeps_content_length_without_body(serve_shared):
    server = app(serve_shared, "bodiless")
    for target in (b"/304?0", b"/304?5"):
        reply = exchange(server, GET % target + GET_CLOSE % b"/ok")
        first, rest = reply.split(b"\r\n\r\n", 1)
        assert first.startswith(b"HTTP/1.1 304")
        assert b"Content-Length: %s\r\n" % target[-1:] in first + b"\r\n"
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok")


# ---- a failure between start and body ----

def test_exception_after_start_before_body_is_500(serve):
    server = app(serve, "raises_before")
    server.tracebacks_expected = True
    workers = server.workers()
    with server.connect() as sock:
        sock.sendall(GET % b"/after-start")
        [(status, headers, _)] = read_responses(sock, 1)
        assert status == 500 and headers["content-length"] != "10"
        sock.sendall(GET % b"/ok")
        assert read_responses(sock, 1)[0][2] == b"ok"
    assert_worker_lives(server, workers)
    server.stop()
    assert "boom after start, before the body" in server.read_output()


# ---- request body flow control ----

def test_reading_stops_while_the_app_does_not_receive(serve, tmp_path):
    server = app(serve, "gated_digest")
    gated_upload(server, b"/", tmp_path / "gate")


# ---- stopping mid-stream ----

def test_stream_ends_when_the_worker_stops(serve, tmp_path):
    server = app(serve, "endless", "--graceful-timeout", "0.5")
    marker = tmp_path / "ended"
    with server.connect() as sock:
        sock.sendall(GET % (b"/?" + bytes(marker)))
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")  # streaming; we read no further
        started = time.monotonic()
        assert server.stop() == 0
    assert time.monotonic() - started < 5
    assert marker.read_text() == "ended", "the app's send raised once the connection closed: its finally ran"
    assert "ERROR" not in server.read_output()


# ---- our error answers behind the app's ----

def test_bad_request_behind_a_slow_answer_is_answered_after_it(serve):
    server = app(serve, "slow", "--max-body", "1000")
    for bad in (b"NOT HTTP\r\n\r\n", OVER_LIMIT):
        assert_error_follows_first(exchange(server, GET % b"/first?0.3" + bad))


def test_target_the_app_cannot_split_is_400(serve):
    server = app(serve, "echo_body")
    workers = server.workers()
    for request in UNSPLITTABLE:
        reply = exchange(server, request)
        assert reply.endswith(b"\r\n\r\nBad Request\r\n") and reply.count(b"HTTP/1.1 400") == 1, reply
    assert fetch(server, "/", "POST", b"small")[0].status == 200 and server.workers() == workers


def test_body_over_the_limit_while_the_app_reads_it(serve):
    server = app(serve, "echo_body", "--max-body", "1000")
    workers = server.workers()
    reply = exchange(server, OVER_LIMIT)
    assert reply.startswith(b"HTTP/1.1 413 ") and reply.count(b"HTTP/1.1") == 1, reply
    assert fetch(server, "/", "POST", b"small")[0].status == 200 and server.workers() == workers


