"""WSGI apps in the workers, over real sockets: environ, body, write(), errors, exc_info, close(), threads."""

from __future__ import annotations

import http.client
import os
import threading
import time

from tests.app.test_asgi import APPS, get


def test_environ_body_and_write(serve):
    server = serve("apps:wsgi_echo", "--app-dir", APPS, "--root-path", "/base")
    status, headers, body = get(server.port, "POST", "/a%20b?q=1", body=b"12345",
                                headers={"X-Test": "t", "Content-Type": "text/x"})
    assert status == 200
    assert body == b"[POST|/base|/a b|q=1|text/x|t|HTTP/1.1|http|5]"


def test_errors_exc_info_and_close(serve, tmp_path):
    marker = tmp_path / "closed"
    server = serve("apps:wsgi_broken", "--app-dir", APPS, env={"FASTCLUSTER_TEST_MARKER": str(marker)})
    server.tracebacks_expected = True  # the app raises on purpose
    [worker] = server.workers()
    closed_before = marker.read_text().count("closed")  # the readiness probe's GET / counts too
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
