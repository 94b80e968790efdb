"""WSGI apps in the workers, over real sockets: environ, body, write(), errors, exc_info, close(), threads."""

from __future__ import annotations

import http.client
import os
import threading
import time

import pytest

from tests.app.client import stalled_download
from tests.app.test_asgi import APPS, get
from tests.conftest import http_exchange, wait_until


def test_environ_body_and_write(serve_shared):
    server = serve_shared("apps:wsgi_echo", "--app-dir", APPS, "--root-path", "/base")
    status, headers, body = get(server.port, "POST", "/a%20b?q=1", body=b"12345",
                                headers={"X-Test": "t", "Content-Type": "text/x"})
    assert status == 200
    assert body == b"[POST|/base|/a b|q=1|text/x|t|HTTP/1.1|http|5]"


def test_errors_exc_info_and_close(serve, tmp_path):
    marker = tmp_path / "closed"
    server = serve("apps:wsgi_broken", "--app-dir", APPS, env={"FASTCLUSTER_TEST_MARKER": str(marker)})
    server.tracebacks_expected = True  # the app raises on purpose
    [worker] = server.workers()
    # The readiness probe's GET / is closed too: wait until its line is written before counting from it.
    assert wait_until(lambda: marker.exists() and marker.read_text().count("closed") >= 1)
    closed_before = marker.read_text().count("closed")
    assert get(server.port, "GET", "/raise")[0] == 500
    assert get(server.port, "GET", "/bad-header")[0] == 500
    status, _, body = get(server.port, "GET", "/exc-info")
    assert (status, body) == (503, b"sorry")
    assert get(server.port, "GET", "/")[2] == b"ok"
    assert marker.read_text().count("closed") == closed_before + 2
    assert server.workers() == [worker]


def test_threads_keep_other_connections_served(serve):
    server = serve("apps:wsgi_slow", "--app-dir", APPS, "--threads", "4")
    results = []

    def slow():
        results.append(get(server.port, "GET", "/slow?1.0")[2])

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert get(server.port, "GET", "/quick?0")[2] == b"/quick"
    assert time.monotonic() - started < 0.7, "a slow request held up another connection"
    thread.join(5)
    assert results == [b"/slow"]


def test_interface_can_be_forced(serve):
    server = serve("apps:wsgi_echo", "--app-dir", APPS, "--interface", "wsgi")
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    client.request("GET", "/")
    assert client.getresponse().status == 200
    assert os.path.isdir(APPS)


def read_until(sock, ending: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(ending):
        chunk = sock.recv(65536)
        assert chunk, f"closed before {ending!r}: {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize("threads", ["0", "2"])
def test_iterables_are_streamed_as_they_yield(serve, tmp_path, threads):
    server = serve("apps:wsgi_stream", "--app-dir", APPS, "--threads", threads)
    gate = tmp_path / "gate"
    with server.connect() as sock:
        sock.sendall(b"GET /gate?%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(gate).encode())
        early = read_until(sock, b"7\r\nsecond|\r\n")
        assert b"Transfer-Encoding: chunked" in early and b"6\r\nfirst|\r\n" in early
        gate.touch()
        assert read_until(sock, b"0\r\n\r\n").endswith(b"5\r\nthird\r\n0\r\n\r\n")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection is still usable
        assert read_until(sock, b"ready").startswith(b"HTTP/1.1 200 OK")
    with server.connect() as sock:
        gate_10 = http_exchange(sock, b"GET /gate?%s HTTP/1.0\r\n\r\n" % str(gate).encode())
    head, body = gate_10.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding" not in head and body == b"first|second|third", "HTTP/1.0: close-delimited"


def test_streamed_iterable_waits_for_a_slow_client(serve, tmp_path):
    server = serve("apps:wsgi_stream", "--app-dir", APPS, "--threads", "2")
    progress = tmp_path / "progress"
    sock, stalled = stalled_download(server, progress)
    with sock:
        assert stalled < 320, "the iterable was not held back while the client read nothing"
        answer = http_exchange(sock, b"", timeout=10)
    assert answer.endswith(b"0\r\n\r\n") and answer.split(b"\r\n\r\n", 1)[1].count(b"x") == 320 * 65536


def test_generator_app_with_get_and_head(serve):
    server = serve("apps:wsgi_generator", "--app-dir", APPS)
    assert get(server.port, "GET", "/")[::2] == (200, b"one|two")
    status, _, body = get(server.port, "HEAD", "/")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize("app", ["apps:hello", "apps:wsgi_echo", "apps:wsgi_generator"])
def test_app_requests_reach_the_access_log(serve, tmp_path, app):
    path = tmp_path / "access.log"
    server = serve(app, "--app-dir", APPS, "--access-log", str(path), "--access-log-format", "combined")
    get(server.port, "GET", "/logged?x=1", headers={"User-Agent": "tester", "Referer": "http://r/"})
    server.stop()  # which writes what the worker buffered
    [line] = [line for line in path.read_text().splitlines() if "/logged" in line]
    assert '"GET /logged?x=1 HTTP/1.1" 200 ' in line and line.endswith('"http://r/" "tester"'), line


@pytest.mark.parametrize("app", ["apps:slow", "apps:wsgi_slow"])
def test_the_access_log_has_the_app_s_duration_body_bytes_and_headers(serve, tmp_path, app):
    path = tmp_path / "access.log"
    log_format = "%(U)s %(q)s %(s)s %(B)s %(D)s %(L)s %({X-Request-Id}i)s %({Content-Type}i)s"
    server = serve(app, "--app-dir", APPS, "--access-log", str(path), "--access-log-format", log_format)
    status, _, body = get(server.port, "POST", "/slow?0.3", body=b"x", headers={"X-Request-Id": "r1",
                                                                             "Content-Type": "text/plain"})
    assert status == 200
    server.stop()
    [line] = [line for line in path.read_text().splitlines() if line.startswith("/slow")]
    target, query, status_text, size, micros, seconds, request_id, content_type = line.split()
    assert (target, query, status_text, int(size), request_id, content_type) == (
        "/slow", "0.3", "200", len(body), "r1", "text/plain")
    # uvloop's timers count from its cached loop time, so a 0.3 s sleep may end a little before 0.3 s
    # of real time have passed since the request arrived.
    assert 290_000 <= int(micros) < 5_000_000 and abs(int(micros) / 1e6 - float(seconds)) < 1e-5


@pytest.mark.parametrize("app", ["apps:hello", "apps:wsgi_echo"])
def test_the_access_log_has_response_headers_environ_values_and_the_basic_user(serve, tmp_path, app):
    path = tmp_path / "access.log"
    log_format = "%(U)s|%({Content-Type}o)s|%({X-None}o)s|%({SERVER_PROTOCOL}e)s|%({wsgi.url_scheme}e)s|%(u)s"
    server = serve(app, "--app-dir", APPS, "--access-log", str(path), "--access-log-format", log_format)
    get(server.port, "GET", "/logged", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})  # alice:secret
    get(server.port, "GET", "/other", headers={"Authorization": "Bearer abc"})
    server.stop()
    lines = dict(line.split("|", 1) for line in path.read_text().splitlines())
    environ = "HTTP/1.1|http" if app == "apps:wsgi_echo" else "-|-"  # an ASGI app has no environ
    assert lines["/logged"] == f"text/plain|-|{environ}|alice"
    assert lines["/other"] == f"text/plain|-|{environ}|-"


def test_path_info_loses_a_script_name_prefix_the_proxy_passed_on(serve_shared):
    server = serve_shared("apps:wsgi_echo", "--app-dir", APPS, "--root-path", "/base")
    assert get(server.port, "GET", "/base/inner")[2].split(b"|")[1:3] == [b"/base", b"/inner"]
    assert get(server.port, "GET", "/basement")[2].split(b"|")[2] == b"/basement"
