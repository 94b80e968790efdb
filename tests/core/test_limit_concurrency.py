"""--limit-concurrency over real sockets: past N requests in flight in a worker, new ones get 503 with
Connection: close, counted as errors; the limit frees up as answers end."""

from __future__ import annotations

import http.client
import socket

from tests.app.client import APPS
from tests.conftest import free_port, http_exchange, read_responses, wait_until


def metric(admin: int, name: str) -> float:
    client = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    client.request("GET", "/metrics")
    text = client.getresponse().read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def one_request(server) -> bytes:
    with server.connect() as sock:
        return http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")


def test_app_requests_past_the_limit_get_503(serve, tmp_path):
    admin = free_port()
    server = serve("asgi_apps:gated", "--app-dir", APPS, "--limit-concurrency", "2",
                   "--admin-port", str(admin))
    gate = tmp_path / "gate"
    log = tmp_path / "gate.log"
    waiting = [server.connect() for _ in range(2)]
    for sock in waiting:
        sock.sendall(b"GET /wait?%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(gate).encode())
    assert wait_until(lambda: log.exists() and log.read_text().count("in") == 2)
    with server.connect() as sock:  # the third client, which asked to keep its connection
        answer = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 503 ") and b"Connection: close\r\n" in answer
    gate.touch()
    for sock in waiting:
        [(status, _, body)] = read_responses(sock, 1)
        assert (status, body) == (200, b"done")
        sock.close()
    assert one_request(server).endswith(b"\r\n\r\nok")  # answered requests no longer count
    assert wait_until(lambda: metric(admin, 'fastcluster_client_errors_total{slot="0"}') == 1)
    assert metric(admin, 'fastcluster_responses_total{slot="0",class="5xx"}') == 1


def test_a_client_that_leaves_frees_its_place(serve, tmp_path):
    server = serve("asgi_apps:gated", "--app-dir", APPS, "--limit-concurrency", "1")
    gate = tmp_path / "gate"
    waiting = server.connect()
    waiting.sendall(b"GET /wait?%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(gate).encode())
    assert wait_until(lambda: (tmp_path / "gate.log").exists())
    assert one_request(server).startswith(b"HTTP/1.1 503 ")
    waiting.close()
    assert wait_until(lambda: one_request(server).endswith(b"\r\n\r\nok"))
    gate.touch()


def test_delayed_builtin_answers_count_in_flight(serve):
    server = serve("--limit-concurrency", "2")
    delayed = [server.connect() for _ in range(2)]
    for sock in delayed:
        sock.sendall(b"GET /delay/600000 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_until(lambda: one_request(server).startswith(b"HTTP/1.1 503 "))
    for sock in delayed:
        sock.shutdown(socket.SHUT_RDWR)  # a client giving up: its answer no longer waits
        sock.close()
    assert wait_until(lambda: one_request(server).startswith(b"HTTP/1.1 200 OK"))
