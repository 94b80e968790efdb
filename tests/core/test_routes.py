"""The built-in routes and per-request response controls, over real sockets."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time

import pytest

from tests.conftest import http_exchange, read_responses, wait_until

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def serve_once(serve_shared):
    """One server for the tests of this module that do not change its flags."""
    return serve_shared()


def pattern(size: int) -> bytes:
    return (PATTERN * (size // 64 + 1))[:size]


def fetch(server, path: str, method: str = "GET", body: bytes | None = None,
          headers: dict | None = None) -> http.client.HTTPResponse:
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    client.request(method, path, body=body, headers=headers or {})
    response = client.getresponse()
    response.body = response.read()
    client.close()
    return response


def read_chunked(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, list[bytes], bytes]:
    """Read one chunked response: (head, chunks, what follows it)."""
    def fill(enough) -> bytes:
        nonlocal buffer
        while not enough(buffer):
            data = sock.recv(65536)
            assert data, f"closed early: {buffer[:200]!r}"
            buffer += data
        return buffer
    head, buffer = fill(lambda data: b"\r\n\r\n" in data).split(b"\r\n\r\n", 1)
    chunks = []
    while True:
        size_line, buffer = fill(lambda data: b"\r\n" in data).split(b"\r\n", 1)
        size = int(size_line, 16)
        fill(lambda data, wanted=size + 2: len(data) >= wanted)
        data, buffer = buffer[:size], buffer[size + 2:]
        if size == 0:
            return head, chunks, buffer
        chunks.append(data)


def test_plain_paths_keep_their_fixed_answers(serve_once):
    assert fetch(serve_once, "/").body == b"Hello, World!"
    assert json.loads(fetch(serve_once, "/json").body) == {"message": "Hello, World!"}
    assert fetch(serve_once, "/any/other/path?q=1").body == b"Hello, World!"


@pytest.mark.parametrize("code", [200, 201, 302, 404, 418, 500, 503, 599])
def test_status_path(serve_once, code):
    response = fetch(serve_once, f"/status/{code}")
    assert response.status == code


def test_status_and_headers_controls(serve_once):
    response = fetch(serve_once, "/json?status=201&header=X-One:1&header=X-Two:two%20words")
    assert response.status == 201
    assert response.getheader("X-One") == "1"
    assert response.getheader("X-Two") == "two words"
    assert json.loads(response.body) == {"message": "Hello, World!"}
    response = fetch(serve_once, "/status/204")
    assert response.status == 204 and response.body == b""


@pytest.mark.parametrize("size", [0, 1, 100, 65535, 65536, 65537, 300_000, 5_000_000])
def test_bytes_path_and_size_control(serve_once, size):
    response = fetch(serve_once, f"/bytes/{size}")
    assert response.status == 200
    assert response.getheader("Content-Length") == str(size)
    assert response.body == pattern(size)
    assert fetch(serve_once, f"/?size={size}").body == pattern(size)


@pytest.mark.parametrize("size", [0, 10, 70_000, 1_000_000])
def test_chunked_control(serve_once, size):
    with serve_once.connect() as sock:
        sock.sendall(f"GET /bytes/{size}?chunked=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode() + GET)
        head, chunks, rest = read_chunked(sock)
        assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
        assert b"".join(chunks) == pattern(size)
        assert read_responses(sock, 1, initial=rest)[0][2] == b"Hello, World!"


@pytest.mark.parametrize("count", [0, 1, 5, 100])
def test_stream_sends_n_chunks(serve_once, count):
    with serve_once.connect() as sock:
        sock.sendall(f"GET /stream/{count} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head, chunks, _ = read_chunked(sock)
    assert len(chunks) == count
    assert [json.loads(piece)["id"] for piece in chunks] == list(range(count))


def test_close_control_closes_after_the_answer(serve_once):
    with serve_once.connect() as sock:
        data = http_exchange(sock, b"GET /json?close=1 HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"\r\nConnection: close\r\n" in data


def test_echo_returns_body_and_content_type(serve_once):
    body = os.urandom(100_000)
    response = fetch(serve_once, "/echo", "POST", body, {"Content-Type": "application/x-test"})
    assert response.getheader("Content-Type") == "application/x-test"
    assert response.body == body
    with serve_once.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert read_responses(sock, 1)[0][2] == b"abcde"


def test_headers_path_returns_request_headers(serve_once):
    response = fetch(serve_once, "/headers", headers={"X-Custom": "value 1"})
    headers = json.loads(response.body)["headers"]
    assert headers["X-Custom"] == "value 1"
    assert headers["Host"].startswith("127.0.0.1")


def test_head_gets_no_body(serve_once):
    with serve_once.connect() as sock:
        sock.sendall(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while not data.endswith(b"ABC"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert b"Content-Length: 1000\r\n" in data
    assert data.count(b"HTTP/1.1 200") == 2 and b"ABCDEF" not in data


def test_control_header_applies_to_any_path(serve_once):
    control = json.dumps({"status": 503, "size": 7, "header": ["X-A:b"], "chunked": False})
    response = fetch(serve_once, "/some/path", headers={"X-Fastcluster-Response": control})
    assert response.status == 503
    assert response.getheader("X-A") == "b"
    assert response.body == pattern(7)


@pytest.mark.parametrize("query, reason", [
    ("status=99", b"status must be between 100 and 599"),
    ("status=600", b"status must be between 100 and 599"),
    ("status=abc", b"status must be a whole number"),
    ("size=-1", b"size must not be negative"),
    ("header=NoColon", b"header must be Name:Value"),
    ("header=Bad%0d%0aName:1", b"header must be Name:Value"),
    ("header=X:a%0db", b"header value must not hold control characters"),
    ("chunked=maybe", b"chunked must be 1 or 0"),
    ("delay=-5", b"delay must be between"),
])
def test_bad_controls_get_400_with_a_reason(serve_once, query, reason):
    response = fetch(serve_once, f"/?{query}")
    assert response.status == 400
    assert response.body.startswith(reason)
    assert response.body.count(b"\n") == 1


def test_query_names_that_are_no_controls_are_ignored(serve_once):
    for path in ["/?foo=1", "/?_=1733140000123&foo", "/delay/0?nonsense=1"]:  # load tools' cache-busters
        response = fetch(serve_once, path)
        assert (response.status, response.body) == (200, b"Hello, World!"), path
    assert json.loads(fetch(serve_once, "/json?q=1").body) == {"message": "Hello, World!"}
    assert fetch(serve_once, "/bytes/5?cachebust=7").body == pattern(5)
    response = fetch(serve_once, "/json?foo=1&status=201&bar")
    assert response.status == 201 and json.loads(response.body) == {"message": "Hello, World!"}


def read_head(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes]:
    """One answer head off sock: (head, what follows it)."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        assert data, f"closed early: {buffer!r}"
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return head, rest


@pytest.mark.parametrize("path, interim", [
    ("/status/100", b"HTTP/1.1 100 Continue"),
    ("/status/103?header=Link:%3C/a.css%3E", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>"),
    ("/bytes/3?status=102", b"HTTP/1.1 102 Processing"),
])
def test_informational_status_is_interim_then_200(serve_once, path, interim):
    with serve_once.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode() + GET)
        head, rest = read_head(sock)
        assert head == interim
        [(status, _, body), (_, _, after)] = read_responses(sock, 2, initial=rest)
    assert status == 200 and after == b"Hello, World!"
    assert body in (b"200 OK\r\n", pattern(3))


def test_informational_status_to_http10_and_101(serve_once):
    with serve_once.connect() as sock:
        reply = http_exchange(sock, b"GET /status/103 HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b" 103 " not in reply  # HTTP/1.0 knows no 1xx
    response = fetch(serve_once, "/status/101")
    assert response.status == 400 and b"101" in response.body


def test_bad_control_header_gets_400(serve_once):
    for control in ["not json", "[1]", '{"status": 1000}', '{"colour": "red"}', '{"status": 101}',
                    '{"status": [1]}', '{"delay": {}}', '{"header": {"a": 1}}', '{"header": [1]}',
                    '{"size": null}']:
        response = fetch(serve_once, "/", headers={"X-Fastcluster-Response": control})
        assert response.status == 400, control


def test_delay_holds_only_its_own_request(serve_once):
    slow = [serve_once.connect() for _ in range(500)]
    for sock in slow:
        sock.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
    sent = time.monotonic()
    # Others are answered at once while 500 delayed requests wait.
    for _ in range(5):
        assert fetch(serve_once, "/json").status == 200
    assert time.monotonic() - sent < 1.2
    for sock in slow:
        status, _, body = read_responses(sock, 1)[0]
        assert status == 200 and body == b"Hello, World!"
        sock.close()
    assert time.monotonic() - sent >= 1.4


def test_delay_control_and_pipelined_order(serve_once):
    with serve_once.connect() as sock:
        start = time.monotonic()
        sock.sendall(b"GET /json?delay=300 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /bytes/5 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /delay/100 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n")
        responses = read_responses(sock, 4)
        elapsed = time.monotonic() - start
    assert [status for status, _, _ in responses] == [200, 200, 200, 201]
    assert responses[0][2] == b'{"message":"Hello, World!"}'
    assert responses[1][2] == b"ABCDE"
    assert elapsed >= 0.3  # each delay counts from its request's arrival, so the two overlap


def test_drip_spreads_bytes_over_time(serve_once):
    with serve_once.connect() as sock:
        start = time.monotonic()
        sock.sendall(b"GET /drip?duration=0.6&numbytes=4 HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, body = read_responses(sock, 1)[0]
        elapsed = time.monotonic() - start
    assert status == 200 and body == b"****"
    assert 0.4 <= elapsed < 3
    with serve_once.connect() as sock:
        sock.sendall(b"GET /drip?duration=0.3&numbytes=300 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_responses(sock, 1)[0][2] == b"*" * 300


def test_large_body_streams_without_holding_it(serve_once):
    size = 200 * 1024 * 1024
    with serve_once.connect(timeout=30) as sock:
        sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, data = data.split(b"\r\n\r\n", 1)
        assert f"Content-Length: {size}".encode() in head
        received = len(data)
        tail = data
        while received < size:
            chunk = sock.recv(1 << 20)
            assert chunk
            received += len(chunk)
            tail = (tail + chunk)[-64:]
            if received > size // 2:
                worker_rss = max(rss_kib(pid) for pid in serve_once.workers())
        assert received == size
        assert tail == pattern(size)[-64:]
    assert worker_rss < 100 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_clients_leaving_mid_answer_leave_nothing_behind(serve):
    server = serve("--workers", "1")
    for target in (b"/bytes/1073741824", b"/stream/100000", b"/drip?duration=1&numbytes=5", b"/delay/1000",
                   b"/?size=100000000&chunked=1"):
        with server.connect() as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            if not target.startswith(b"/delay"):
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert fetch(server, "/").body == b"Hello, World!"
    # Teardown checks that the worker's connection and buffer counters came back to zero.


def test_http10_gets_no_chunked_coding(serve_once):
    with serve_once.connect() as sock:
        data = http_exchange(sock, b"GET /stream/3 HTTP/1.0\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head and b"Connection: close" in head
    assert body == b'{"id": 0}\n{"id": 1}\n{"id": 2}\n'
    with serve_once.connect() as sock:
        data = http_exchange(sock, b"GET /bytes/5?chunked=1 HTTP/1.0\r\n\r\n")
    assert b"chunked" not in data and b"Content-Length: 5\r\n" in data and data.endswith(b"\r\n\r\nABCDE")


def test_client_hanging_up_during_a_delay_is_closed_at_once(serve):
    server = serve("--workers", "1")
    [worker] = server.workers()

    def open_fds() -> int:
        return len(os.listdir(f"/proc/{worker}/fd"))

    time.sleep(0.3)  # let the readiness probe's connection close
    before = open_fds()
    socks = [server.connect() for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"GET /delay/60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_until(lambda: open_fds() >= before + 20, 3)
    finally:
        for sock in socks:
            sock.close()
    assert wait_until(lambda: open_fds() <= before, 3)
