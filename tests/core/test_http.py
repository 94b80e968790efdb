"""HTTP/1.1 behaviour of the worker core with the built-in responder, over real sockets."""

from __future__ import annotations

import email.utils
import http.client
import os
import select
import socket
import threading
import time

import pytest

from tests.conftest import http_exchange, read_responses, wait_until

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
GET_JSON = b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n"
TCP_CLOSE = 7  # include/net/tcp_states.h


def test_keep_alive_serves_many_requests_on_one_connection(serve_shared):
    server = serve_shared()
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for _ in range(50):
        client.request("GET", "/")
        response = client.getresponse()
        assert response.read() == b"Hello, World!"
        assert response.getheader("Connection") is None
    assert client.sock is not None


def test_connection_close_is_honoured(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        data = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in data
    assert data.endswith(b"Hello, World!")


def test_http10_closes_unless_keep_alive_is_asked(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        data = http_exchange(sock, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        responses = read_responses(sock, 2)
    assert [status for status, _, _ in responses] == [200, 200]


def test_pipelined_requests_are_answered_in_order(serve_shared):
    server = serve_shared()
    batch = b"".join(GET_JSON if i % 3 == 0 else GET for i in range(16))
    with server.connect() as sock:
        sock.sendall(batch)
        responses = read_responses(sock, 16)
    bodies = [body for _, _, body in responses]
    assert bodies == [b'{"message":"Hello, World!"}' if i % 3 == 0 else b"Hello, World!" for i in range(16)]


def test_head_has_headers_and_no_body(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        sock.settimeout(5)
        data = b""
        while data.count(b"Hello, World!") < 1:
            data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 13" in head
    assert rest.startswith(b"HTTP/1.1 200 OK"), "HEAD answer carried a body"


def test_bodies_are_read_fully_so_the_connection_stays_usable(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
                     b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-One: x\r\n\r\n" + GET)
        responses = read_responses(sock, 3)
    assert [status for status, _, _ in responses] == [200, 200, 200]


def test_expect_100_continue(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        sock.settimeout(5)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        [(status, _, body)] = read_responses(sock, 1)
    assert (status, body) == (200, b"Hello, World!")


def test_absolute_form_target(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        sock.sendall(b"GET http://example.com/json?header=X-Q:1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        [(status, headers, body)] = read_responses(sock, 1)
    assert headers["content-type"] == "application/json"


def test_date_and_server_headers(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        sock.sendall(GET)
        [(_, headers, _)] = read_responses(sock, 1)
    assert headers["server"] == "fastcluster"
    sent = email.utils.parsedate_to_datetime(headers["date"]).timestamp()
    assert abs(sent - time.time()) < 3
    other = serve_shared("--server-header", "edge/1")
    with other.connect() as sock:
        sock.sendall(GET)
        assert read_responses(sock, 1)[0][1]["server"] == "edge/1"
    bare = serve_shared("--no-server-header")
    with bare.connect() as sock:
        sock.sendall(GET)
        assert "server" not in read_responses(sock, 1)[0][1]


def test_date_header_moves_on(serve_shared):
    server = serve_shared()
    with server.connect() as sock:

        def date() -> str:
            sock.sendall(GET)
            return read_responses(sock, 1)[0][1]["date"]

        first = second = date()
        deadline = time.monotonic() + 3  # the worker refreshes it once a second
        while second == first and time.monotonic() < deadline:
            time.sleep(0.05)
            second = date()
    assert email.utils.parsedate_to_datetime(second) > email.utils.parsedate_to_datetime(first)


def test_response_flags(serve, tmp_path):
    server = serve("--response-body", "pong", "--response-status", "503",
                   "--response-header", "X-Test: yes", "--response-header", "Content-Type: text/x-pong")
    with server.connect() as sock:
        sock.sendall(GET)
        [(status, headers, body)] = read_responses(sock, 1)
    assert (status, body, headers["x-test"], headers["content-type"]) == (503, b"pong", "yes", "text/x-pong")

    page = tmp_path / "page.html"
    page.write_bytes(b"<h1>hi</h1>")
    from_file = serve("--response-file", str(page))
    with from_file.connect() as sock:
        sock.sendall(GET)
        [(_, headers, body)] = read_responses(sock, 1)
    assert (body, headers["content-type"]) == (b"<h1>hi</h1>", "text/html")

    sized = serve("--response-size", "100k")
    with sized.connect() as sock:
        sock.sendall(GET)
        [(_, headers, body)] = read_responses(sock, 1)
    assert len(body) == 102400 and headers["content-length"] == "102400"


def worker_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_backpressure_stops_reading_a_peer_that_does_not_read(serve):
    server = serve("--response-size", "64k")
    [worker] = server.workers()
    requests = GET * 400_000  # 10 MB of requests, 26 GB of answers if the server kept reading
    sock = server.connect(timeout=30)
    sender = threading.Thread(target=send_quietly, args=(sock, requests), daemon=True)
    sender.start()
    time.sleep(1.5)
    assert sender.is_alive(), "the server read every request although nobody read its answers"
    assert worker_rss_kb(worker) < 100_000
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 OK")
    sock.shutdown(socket.SHUT_RDWR)  # also wakes the blocked sender
    sock.close()
    sender.join(10)
    assert not sender.is_alive()
    with server.connect() as fresh:
        fresh.sendall(GET)
        assert read_responses(fresh, 1)[0][0] == 200


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_keepalive_timeout_closes_idle_connections(serve):
    server = serve("--keepalive-timeout", "1")
    with server.connect() as sock:
        sock.sendall(GET)
        read_responses(sock, 1)
        started = time.monotonic()
        assert sock.recv(10) == b""
        assert 0.5 < time.monotonic() - started < 3.5


@pytest.mark.parametrize("flag, partial", [
    ("--header-timeout", b"GET / HTTP/1.1\r\nHost: t\r\n"),
    ("--body-timeout", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"),
])
def test_incomplete_request_times_out_with_408(serve_shared, flag, partial):
    server = serve_shared(flag, "1")
    with server.connect() as sock:
        sock.sendall(partial)
        data = http_exchange(sock, b"")
    assert data.startswith(b"HTTP/1.1 408 ")


def test_header_timeout_holds_for_a_trickling_client(serve_shared):
    server = serve_shared("--header-timeout", "1")
    with server.connect() as sock:
        started = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            sock.sendall(bytes([byte]))
            if select.select([sock], [], [], 0.05)[0]:
                break  # the server has answered
        answer = http_exchange(sock, b"")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3.5


def test_write_timeout_drops_a_peer_that_never_reads(serve):
    server = serve("--response-size", "8m", "--write-timeout", "1")
    with server.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(GET)
        wait_until(lambda: reset(sock), 3.5)
        received = 0
        sock.settimeout(5)
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < 8 * 1024 * 1024


def reset(sock: socket.socket) -> bool:
    """Whether the peer reset the connection (TCP_INFO's first byte, the state, is TCP_CLOSE)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE


def test_unix_socket_bind(serve, tmp_path):
    path = str(tmp_path / "fc.sock")
    serve("--bind", f"unix:{path}", port=None)
    assert wait_until(lambda: os.path.exists(path))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(GET)
        assert read_responses(sock, 1)[0][2] == b"Hello, World!"


def test_upgrade_is_answered_as_a_plain_request_then_closed(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        upgrade = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        answer = http_exchange(sock, upgrade + b"\x81\x05hello")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer
    assert answer.endswith(b"Hello, World!")


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_upgrade_body_is_read_and_the_request_logged(serve, tmp_path, upgrade):
    log = tmp_path / "access.log"
    server = serve("--access-log", str(log))
    with server.connect() as sock:
        answer = http_exchange(sock, b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\n"
                                     b"Upgrade: %s\r\nContent-Length: 5\r\n\r\nhello" % upgrade)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in answer
    assert answer.endswith(b"\r\n\r\nhello")  # the body was read as the request's, not dropped
    server.stop()
    assert '"POST /echo HTTP/1.1" 200' in log.read_text()


def test_error_answer_to_head_has_no_body(serve_shared):
    server = serve_shared()
    with server.connect() as sock:
        answer = http_exchange(sock, b"HEAD / HTTP/1.1\r\nHost: t\r\nExpect: nothing\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 417 ") and b"Content-Length: 20\r\n" in answer
    assert answer.endswith(b"Connection: close\r\n\r\n")


def test_large_pipelined_answers_to_a_slow_reader_arrive_whole_and_in_order(serve):
    server = serve("--response-size", "1m")
    with server.connect(timeout=10) as sock:
        sock.sendall((GET_JSON + GET * 9) * 2)  # 18 MB of answers: more than the socket buffers hold
        time.sleep(0.3)
        received = b""
        for _ in range(20):  # read slowly at first, so the server's output queues up
            received += sock.recv(4096)
            time.sleep(0.01)
        answers = read_responses(sock, 20, initial=received)
    fixed = answers[1][2]
    assert len(fixed) == 1024 * 1024
    for index, (status, _, body) in enumerate(answers):
        assert status == 200
        assert body == (b'{"message":"Hello, World!"}' if index % 10 == 0 else fixed)
