"""ASGI apps in the workers, over real sockets: scope, bodies both ways, pipelining, errors, lifespan."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time

from tests.app.client import APPS, stalled_download
from tests.conftest import free_port, http_exchange, read_responses, wait_until


def app_server(serve, app: str, *args: str, **kwargs):
    return serve(app, "--app-dir", APPS, *args, **kwargs)


def get(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    client.request(method, path, body=body, headers=headers or {})
    response = client.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_scope(serve):
    server = app_server(serve, "apps:echo_scope", "--root-path", "/base")
    status, headers, body = get(server.port, "POST", "/caf%C3%A9/x?y=1&z", body=b"hello world",
                                headers={"X-Test": "yes"})
    scope = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert scope["path"] == "/base/café/x" and scope["raw_path"] == "/base/caf%C3%A9/x"
    assert scope["query_string"] == "y=1&z" and scope["root_path"] == "/base"
    assert scope["method"] == "POST" and scope["http_version"] == "1.1" and scope["scheme"] == "http"
    assert ["x-test", "yes"] in scope["headers"] and ["host", f"127.0.0.1:{server.port}"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"started": "yes"}, "lifespan state is copied into each request"
    assert scope["body_length"] == 11 and scope["asgi"]["version"] == "3.0"


def test_framing_headers_are_ours_and_appear_once(serve_shared):
    server = app_server(serve_shared, "apps:echo_scope")
    with server.connect() as sock:
        answer = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.count(b"content-length:") == 1 and head.count(b"date:") == 1
    assert head.count(b"connection: close") == 1


def test_chunked_request_body_and_pipelining_in_order(serve_shared):
    server = app_server(serve_shared, "apps:slow")
    with server.connect(timeout=10) as sock:
        sock.sendall(b"GET /first?0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /second?0 HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /third?0.1 HTTP/1.1\r\nHost: t\r\n\r\n")
        bodies = [body for _, _, body in read_responses(sock, 3)]
    assert bodies == [b"/first", b"/second", b"/third"]
    echo = app_server(serve_shared, "apps:echo_scope")
    with echo.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        [(status, _, body)] = read_responses(sock, 1)
    assert json.loads(body)["body_length"] == 11


def test_large_body_is_streamed_to_the_app(serve):
    server = app_server(serve, "apps:echo_scope", "--max-body", "50m")
    status, _, body = get(server.port, "POST", "/", body=b"x" * (20 << 20))
    assert status == 200 and json.loads(body)["body_length"] == 20 << 20


def test_content_length_from_the_app_is_sent_once(serve):
    server = app_server(serve, "apps:hello")
    with server.connect() as sock:
        answer = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.lower().count(b"content-length:") == 1 and body == b"Hello, World!"


def test_streaming_response_is_chunked_and_head_has_no_body(serve_shared):
    server = app_server(serve_shared, "apps:stream")
    with server.connect() as sock:
        answer = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"".join(b"7\r\npart %d\n\r\n" % i for i in range(5)) + b"0\r\n\r\n"
    status, headers, body = get(server.port, "HEAD", "/")
    assert status == 200 and body == b""


def test_app_errors_get_500_and_the_worker_lives(serve):
    server = app_server(serve, "apps:broken")
    server.tracebacks_expected = True  # the app raises on purpose
    [worker] = server.workers()
    for path in ("/raise", "/silent", "/bad-header"):
        status, _, body = get(server.port, "GET", path)
        assert status == 500, path
    with server.connect() as sock:
        answer = http_exchange(sock, b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"partial" in answer
    assert not answer.endswith(b"0\r\n\r\n"), "a response cut short must not look complete"
    assert get(server.port, "GET", "/fine")[2] == b"fine"
    assert server.workers() == [worker]
    server.stop()
    log = server.read_output()
    assert "boom before the response" in log and "invalid value for header x-evil" in log


def test_factory_and_callable_instance(serve):
    server = app_server(serve, "apps:make_app", "--factory")
    assert json.loads(get(server.port, "GET", "/")[2])["path"] == "/"
    instance = app_server(serve, "apps:instance")
    assert get(instance.port, "GET", "/")[2].startswith(b"part 0")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=30)


def test_import_errors_are_one_line_and_status_2():
    for spec, message in (("nosuchmodule:app", "cannot import module 'nosuchmodule'"),
                          ("apps:nothing", "has no attribute 'nothing'"),
                          ("apps", "must look like")):
        result = run_cli(spec, "--app-dir", APPS, "--workers", "2")
        assert result.returncode == 2, result
        assert result.stderr.count(message) == 1 and "Traceback" not in result.stderr, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("fastcluster: error: ") and message in last, result.stderr
    preload = run_cli("apps:nothing", "--app-dir", APPS, "--preload")
    assert preload.returncode == 2 and "has no attribute" in preload.stderr


def test_lifespan_startup_failure_stops_the_server_with_the_reason():
    started = time.monotonic()
    result = run_cli("apps:failing_startup", "--app-dir", APPS, "--lifespan", "on", "--workers", "2")
    assert result.returncode == 2
    assert "database unreachable" in result.stderr.strip().splitlines()[-1]
    assert time.monotonic() - started < 20


def test_preload_serves(serve):
    server = app_server(serve, "apps:echo_scope", "--preload")
    assert get(server.port, "GET", "/p")[0] == 200
    assert wait_until(lambda: len(server.workers()) == 1)


def test_send_waits_for_a_slow_client(serve, tmp_path):
    server = app_server(serve, "apps:watch")
    progress = tmp_path / "progress"
    sock, stalled = stalled_download(server, progress)
    with sock:
        assert stalled < 320, "the app was not held back while the client read nothing"
        time.sleep(0.2)
        assert int(progress.read_text()) == stalled
        answer = http_exchange(sock, b"", timeout=10)
    assert answer.endswith(b"0\r\n\r\n") and answer.count(b"x") == 320 * 65536
    assert int(progress.read_text()) == 320


def test_http10_streamed_response_is_ended_by_the_close(serve_shared):
    server = app_server(serve_shared, "apps:stream")
    with server.connect() as sock:
        answer = http_exchange(sock, b"GET / HTTP/1.0\r\n\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == b"".join(b"part %d\n" % i for i in range(5))
