"""The WSGI adapter over real sockets (apps in wsgi_apps.py): wsgi.input read while the body arrives
(--threads) or gathered and spooled (without), its PEP 3333 reading methods, wsgi.file_wrapper by sendfile,
close() of a stream the worker stops, and the status line as the app gave it."""

import hashlib
import io
import json
import os
import time
from urllib.parse import quote

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

GET_CLOSE = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
BODY = b"first line\nsecond\n\nno newline at the end"
MODES = ["/readline", "/readline4", "/readlines", "/readlines-hint", "/iter", "/read3", "/read", "/read-none"]


def app(serve, target, *flags, **kwargs):
    return serve("--app-dir", APPS, f"wsgi_apps:{target}", *flags, **kwargs)


def expected_pieces(mode: str, body: bytes) -> list[str]:
    """What the read_input app gets from a file holding body, by io.BytesIO's reading rules."""
    stream = io.BytesIO(body)
    if mode == "/readlines":
        pieces = stream.readlines()
    elif mode == "/readlines-hint":
        pieces = stream.readlines(5)
    elif mode == "/iter":
        pieces = list(stream)
    elif mode in ("/read", "/read-none"):
        pieces = [stream.read()]
    else:
        read = stream.readline if mode == "/readline" else (lambda: stream.readline(4)) \
            if mode == "/readline4" else (lambda: stream.read(3))
        pieces = list(iter(read, b""))
    return [piece.decode("latin-1") for piece in pieces]


def chunked(body: bytes, size: int) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


def post(server, path: str, body: bytes, *, chunk: int = 0) -> bytes:
    """POST body (Content-Length, or chunked in pieces of `chunk`) on a new connection; the answer's body."""
    framing = b"Transfer-Encoding: chunked" if chunk else b"Content-Length: %d" % len(body)
    with server.connect(timeout=20) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\n%s\r\n\r\n" % (path.encode(), framing))
        sock.sendall(chunked(body, chunk) if chunk else body)
        [(status, _, answer)] = read_responses(sock, 1, timeout=20)
    assert status == 200
    return answer


# ---- reading wsgi.input ----

@pytest.mark.parametrize("threads", ["0", "2"])
def test_input_reading_methods(serve_shared, threads):
    server = app(serve_shared, "read_input", "--threads", threads)
    for mode in MODES:
        assert json.loads(post(server, mode, BODY)) == expected_pieces(mode, BODY), mode
        assert json.loads(post(server, mode, BODY, chunk=7)) == expected_pieces(mode, BODY), mode
    assert json.loads(post(server, "/readline", b"")) == []
    assert json.loads(fetch(server, "/read")[1]) == [""]


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_threads_read_the_body_while_it_arrives(serve_shared, tmp_path, framing):
    server = app(serve_shared, "read_input", "--threads", "2")
    record = tmp_path / "lines"
    first, rest = b"first line\n", b"second line\nlast"
    if framing == "chunked":
        # The first line as a chunk, without the last chunk that would end the body.
        head, first_part = b"Transfer-Encoding: chunked", chunked(first, 64)[:-len(b"0\r\n\r\n")]
        last_part = chunked(rest, 64)
    else:
        head, first_part, last_part = b"Content-Length: %d" % len(first + rest), first, rest
    with server.connect() as sock:
        sock.sendall(b"POST /readline?%s HTTP/1.1\r\nHost: t\r\n%s\r\n\r\n" % (bytes(record), head))
        sock.sendall(first_part)
        assert wait_until(lambda: record.exists() and record.read_bytes() == first, 3), \
            "the app did not get the first line before the rest of the body was sent"
        sock.sendall(last_part)
        [(status, _, body)] = read_responses(sock, 1)
    assert status == 200 and json.loads(body) == ["first line\n", "second line\n", "last"]
    assert record.read_bytes() == first + rest


@pytest.mark.parametrize("body_end", ["client leaves", "body over the limit"])
def test_threads_never_pass_a_cut_body_as_whole(serve, tmp_path, body_end):
    server = app(serve, "record_read", "--threads", "2", "--max-body", "50")
    record = tmp_path / "record"
    with server.connect() as sock:
        sock.sendall(b"POST /?%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\na\r\n%s\r\n"
                     % (bytes(record), b"x" * 10))
        if body_end == "body over the limit":
            assert http_exchange(sock, b"64\r\n" + b"x" * 100 + b"\r\n").startswith(b"HTTP/1.1 413 ")
    assert wait_until(lambda: record.exists() and record.read_text(), 3)
    assert record.read_text() == "cut short", "the app was handed the first 10 bytes as the whole body"
    server.stop()
    assert "ERROR" not in server.read_output()


@pytest.mark.parametrize("threads", ["0", "2"])
def test_large_bodies_arrive_whole(serve_shared, threads):
    server = app(serve_shared, "digest_input", "--threads", threads)
    payload = os.urandom(5 << 20)
    digest = hashlib.sha256(payload).hexdigest()
    for chunk in (0, 100_000):
        answer = json.loads(post(server, "/digest", payload, chunk=chunk))
        assert (answer["length"], answer["sha256"]) == (len(payload), digest)
        if threads == "0":
            assert answer["type"] != "BytesIO", "a body over 1 MiB is spooled to a file, not kept in memory"
    assert json.loads(post(server, "/digest", b"small"))["type"] == ("BytesIO" if threads == "0" else
                                                                      "BodyStream")
    response, echoed = fetch(server, "/echo", "POST", payload)
    assert response.getheader("content-length") == str(len(payload)) and echoed == payload


def test_threads_stop_reading_a_body_the_app_does_not_read_yet(serve_shared, tmp_path):
    server = app(serve_shared, "digest_input", "--threads", "2")
    gated_upload(server, b"/digest", tmp_path / "gate")


# ---- wsgi.file_wrapper ----

@pytest.mark.parametrize("threads", ["0", "2"])
def test_file_wrapper_sends_a_file_from_its_position(serve, tmp_path, threads):
    server = app(serve, "wrapped_file", "--threads", threads)
    data = os.urandom((2 << 20) + 123)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    cases = [("", data), ("&offset=1000", data[1000:]), ("&offset=1000&length=500", data[1000:1500]),
             (f"&offset={len(data)}", b"")]
    for index, (extra, expected) in enumerate(cases):
        marker = tmp_path / f"closed-{index}"
        response, body = fetch(server, f"/file?path={quote(str(path))}&marker={quote(str(marker))}{extra}")
        assert response.status == 200 and response.getheader("content-length") == str(len(expected)), extra
        assert body == expected, extra
        assert marker.read_text() == "closed", "the app's file is closed once, when the answer is made"
    marker = tmp_path / "closed-head"
    with server.connect() as sock:
        target = b"/file?path=%s&marker=%s" % (quote(str(path)).encode(), quote(str(marker)).encode())
        reply = http_exchange(sock, b"HEAD %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target)
    head, body = reply.split(b"\r\n\r\n", 1)
    assert b"Content-Length: %d\r\n" % len(data) in head and body == b""
    assert wait_until(lambda: marker.exists() and marker.read_text() == "closed", 2)
    marker = tmp_path / "closed-pipelined"
    with server.connect() as sock:  # pipelined: each answer after the whole file before it
        target = b"/file?path=%s&marker=%s" % (quote(str(path)).encode(), quote(str(marker)).encode())
        sock.sendall(b"".join(b"GET %s%s HTTP/1.1\r\nHost: t\r\n\r\n" % (target, extra)
                              for extra in (b"", b"&offset=7", b"&length=3")))
        assert [body for _, _, body in read_responses(sock, 3)] == [data, data[7:], data[:3]]
    assert marker.read_text() == "closed" * 3


def test_file_wrapper_over_bytesio_is_iterated(serve, tmp_path):
    server = app(serve, "wrapped_file")
    marker = tmp_path / "closed"
    response, body = fetch(server, f"/bytes?marker={quote(str(marker))}")
    assert response.status == 200 and body == b"memory!" * 1000
    assert wait_until(lambda: marker.exists() and marker.read_text() == "closed", 2)
    marker = tmp_path / "closed-with-length"
    response, body = fetch(server, f"/bytes?marker={quote(str(marker))}&length=7000")
    assert response.getheader("content-length") == "7000" and body == b"memory!" * 1000
    assert wait_until(lambda: marker.exists() and marker.read_text() == "closed", 2)


# ---- stopping mid-stream ----

@pytest.mark.parametrize("threads", ["0", "2"])
def test_stream_is_closed_when_the_worker_stops(serve, tmp_path, threads):
    server = app(serve, "endless", "--graceful-timeout", "0.5", "--threads", threads)
    marker = tmp_path / "closed"
    with server.connect() as sock:
        sock.sendall(b"GET /?%s HTTP/1.1\r\nHost: t\r\n\r\n" % bytes(marker))
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")  # streaming; we read no further
        started = time.monotonic()
        assert server.stop() == 0
    assert time.monotonic() - started < 5
    assert marker.read_text() == "closed", "close() of the app's result runs exactly once"
    assert "ERROR" not in server.read_output(), "a stream cut by the stop is no error of ours"


def test_requests_still_queued_for_a_thread_are_dropped_quietly_at_stop(serve, tmp_path):
    server = app(serve, "endless", "--graceful-timeout", "0.2", "--threads", "1")
    marker = tmp_path / "closed"
    with server.connect() as streaming, server.connect() as sleeping, server.connect() as queued:
        streaming.sendall(b"GET /?%s HTTP/1.1\r\nHost: t\r\n\r\n" % bytes(marker))
        assert streaming.recv(100).startswith(b"HTTP/1.1 200 OK")
        sleeping.sendall(b"GET /sleep?0.5 HTTP/1.1\r\nHost: t\r\n\r\n")  # holds the only thread
        time.sleep(0.1)
        queued.sendall(b"GET /sleep?0 HTTP/1.1\r\nHost: t\r\n\r\n")  # waits for it, until the stop
        assert server.stop() == 0
    assert marker.read_text() == "closed"
    output = server.read_output()
    assert "ERROR" not in output and "Traceback" not in output, output


# ---- Content-Length enforcement ----

@pytest.mark.parametrize("threads", ["0", "2"])
def test_body_not_matching_its_content_length(serve, threads):
    server = app(serve, "wrong_length", "--threads", threads)
    workers = server.workers()
    for path in (b"/over", b"/under"):
        with server.connect() as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\nGET /ok HTTP/1.1\r\nHost: t\r\n\r\n" % path)
            [(status, _, _), (_, _, body)] = read_responses(sock, 2)
        assert status == 500 and body == b"01234", "answered whole: a 500, and the connection goes on"
    pipelined = b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n"
    for path in (b"/over-stream", b"/under-stream"):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path + pipelined)
        head, body = reply.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 100000" in head
        assert body == b"x" * 70000, "cut short and closed: no extra byte, no answer to the request behind it"
    assert fetch(server, "/ok")[1] == b"01234" and server.workers() == workers


# ---- the status line ----

def test_status_reason_phrase_is_sent_as_given(serve_shared):
    server = app(serve_shared, "status_echo")
    for status in ("200 Fine", "404 Nothing Here", "299 Custom Thing", "200"):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET /?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                  % quote(status).encode())
        line = reply.split(b"\r\n", 1)[0]
        assert line == b"HTTP/1.1 " + status.encode() + (b" " if len(status) == 3 else b""), line


def test_invalid_status_is_500(serve_shared):
    server = app(serve_shared, "status_echo")
    workers = server.workers()
    for status in ("abc", "99 x", "600 Too Big", "20x OK", "200OK", "200 OK\r\nX-Split: 1", "200 OK\n",
                   "200 caf\u00e9\u20ac"):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET /?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                  % quote(status).encode())
        assert reply.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), (status, reply)
        assert b"X-Split" not in reply
    assert fetch(server, "/")[0].status == 200 and server.workers() == workers


# ---- our error answers behind the app's ----

# A chunked POST whose first chunk (2 KiB) is over --max-body 1000.
@pytest.mark.parametrize("threads", ["0", "2"])
def test_bad_request_behind_a_slow_answer_is_answered_after_it(serve, threads):
    server = app(serve, "sleepy", "--threads", threads, "--max-body", "1000")
    for bad in (b"NOT HTTP\r\n\r\n", OVER_LIMIT):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET /first?0.2 HTTP/1.1\r\nHost: t\r\n\r\n" + bad)
        assert_error_follows_first(reply)


@pytest.mark.parametrize("threads", ["0", "2"])
def test_target_the_app_cannot_split_is_400(serve_shared, threads):
    server = app(serve_shared, "read_input", "--threads", threads)
    workers = server.workers()
    for request in UNSPLITTABLE:
        with server.connect() as sock:
            reply = http_exchange(sock, request)
        assert reply.endswith(b"\r\n\r\nBad Request\r\n") and reply.count(b"HTTP/1.1 400") == 1, reply
    assert json.loads(post(server, "/read", b"small")) == ["small"] and server.workers() == workers


@pytest.mark.parametrize("threads", ["0", "2"])
def test_body_over_the_limit_while_the_app_reads_it(serve, threads):
    server = app(serve, "read_input", "--threads", threads, "--max-body", "1000")
    workers = server.workers()
    with server.connect() as sock:
        reply = http_exchange(sock, OVER_LIMIT)
    assert reply.startswith(b"HTTP/1.1 413 ") and reply.count(b"HTTP/1.1") == 1, reply
    assert json.loads(post(server, "/read", b"small")) == ["small"] and server.workers() == workers


@pytest.mark.parametrize("threads", ["0", "2"])
def test_flask_reads_a_chunked_body(serve, threads):
    pytest.importorskip("flask")
    server = serve("--app-dir", APPS, "frameworks:flask_app", "--threads", threads)
    with server.connect() as sock:
        sock.sendall(b"POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        sock.sendall(chunked(b"name=Ada&age=36", 5))
        [(status, _, body)] = read_responses(sock, 1)
    assert status == 200, body
    assert json.loads(body) == {"name": "Ada", "age": 36}, "werkzeug needs an input it may read"
    response, body = fetch(server, "/form", "POST", b"name=Bo&age=7",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(body) == {"name": "Bo", "age": 7}


def test_204_and_304_have_no_body(serve_shared):
    server = app(serve_shared, "status_echo")  # Content-Length 2 and a body "ok" whatever the status
    for status, lengths in ((b"204%20No%20Content", []), (b"304%20Not%20Modified", [b"Content-Length: 2"])):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET /?%s HTTP/1.1\r\nHost: t\r\n\r\n" % status
                                  + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        first, rest = reply.split(b"\r\n\r\n", 1)
        assert [line for line in first.split(b"\r\n") if line.startswith(b"Content-Length")] == lengths
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok"), reply


def test_body_pieces_that_are_not_bytes_are_a_500(serve):
    server = app(serve, "bytes_not_iterable")
    for query in (b"", b"?text", b"?list"):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET /bytes%s HTTP/1.1\r\nHost: t\r\n\r\n" % query + GET_CLOSE)
        assert reply.startswith(b"HTTP/1.1 500 ") and b"\0" not in reply, reply
        assert reply.endswith(b"\r\n\r\nready"), "the connection goes on"
    server.stop()
    output = server.read_output()
    assert output.count("gave int, not bytes") == 1 and output.count("gave str, not bytes") == 2
