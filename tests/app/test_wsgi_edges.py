"""Edges of the WSGI adapter over real sockets, one raw app each (wsgi_apps.py): environ, bodies,
start_response with exc_info, write(), close(), file_wrapper, bad headers, threads, pipelining."""

import json
import os
import threading
import time

from tests.app.client import APPS, fetch
from tests.conftest import http_exchange, wait_until


def app(serve, target, *flags, **kwargs):
    return serve("--app-dir", APPS, f"wsgi_apps:{target}", *flags, **kwargs)


get = fetch


def test_environ(serve):
    server = app(serve, "environ_echo", "--root-path", "/api")
    response, body = get(server, "/api/a%20b?x=1", "POST", b"payload",
                         {"Content-Type": "text/plain", "X-Thing": "1", "x-thing": "2"})
    environ = json.loads(body)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/api"
    assert environ["PATH_INFO"] == "/a b"  # the SCRIPT_NAME prefix the proxy passed on is taken off
    assert environ["QUERY_STRING"] == "x=1"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "7"
    assert environ["HTTP_X_THING"] == "1,2"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["has_errors"] is True
    assert environ["input"] == "payload"


def test_path_info_is_latin1_whatever_the_bytes(serve_shared):
    server = app(serve_shared, "environ_echo")
    environ = json.loads(get(server, "/a%FFb/caf%C3%A9")[1])
    assert environ["PATH_INFO"] == "/a\u00ffb/caf\u00c3\u00a9"  # PEP 3333: the bytes as latin-1
    assert environ["RAW_URI"] == "/a%FFb/caf%C3%A9"


def test_chunked_request_body_and_large_body(serve_shared):
    server = app(serve_shared, "environ_echo")
    with server.connect() as sock:
        reply = http_exchange(sock, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                    b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert b'"input": "hello world"' in reply
    payload = b"z" * (3 << 20)  # spills from memory to a temporary file
    assert len(json.loads(get(server, "/", "POST", payload)[1])["input"]) == len(payload)


def test_iterable_without_length_is_chunked(serve):
    server = app(serve, "chunked_iterable")
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reply.endswith(b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
    response, _ = get(server, "/", "HEAD")
    assert response.status == 200


def test_close_always_called(serve, tmp_path):
    server = app(serve, "closing")
    server.tracebacks_expected = True
    done, failed = tmp_path / "done", tmp_path / "failed"
    assert get(server, f"/?{done}")[1] == b"firstsecond"
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET /?%s&fail HTTP/1.1\r\nHost: t\r\n\r\n" % str(failed).encode())
    assert b"first" in reply and not reply.endswith(b"0\r\n\r\n")  # started, so cut off
    assert wait_until(lambda: done.exists() and failed.exists(), 2)


def test_write_callable(serve):
    server = app(serve, "write_callable")
    assert get(server, "/")[1] == b"hello world"


def test_start_response_with_exc_info_replaces_headers(serve):
    server = app(serve, "exc_info_app")
    response, body = get(server, "/")
    assert response.status == 503 and body == b"busy"


def test_exception_gives_500_and_bad_header_is_refused(serve):
    server = app(serve, "raises")
    server.tracebacks_expected = True
    assert get(server, "/x")[0].status == 500
    assert get(server, "/")[0].status == 204
    server = app(serve, "bad_header")
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 500") and b"evil" not in reply
    server.stop()
    assert "x-split" in server.read_output().lower()


def test_file_wrapper(serve):
    server = app(serve, "file_wrapper")
    with open(os.path.join(APPS, "wsgi_apps.py"), "rb") as source:
        assert get(server, "/")[1] == source.read()


def test_threads_keep_other_connections_served(serve):
    server = app(serve, "sleepy", "--threads", "4")
    slow = threading.Thread(target=get, args=(server, "/slow?1.0"))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert get(server, "/fast")[1] == b"/fast"
    assert time.monotonic() - started < 0.8
    slow.join()


def test_pipelined_in_order(serve):
    server = app(serve, "sleepy", "--threads", "2")
    requests = b"".join(b"GET /%d?%s HTTP/1.1\r\nHost: t\r\n\r\n" % (i, b"0.05" if i % 2 else b"0")
                        for i in range(5))
    with server.connect() as sock:
        reply = http_exchange(sock, requests + b"GET /end HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in reply.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/end"]
