"""Edges of the ASGI adapter over real sockets, one raw app each (asgi_apps.py): scope, streamed bodies and
responses, HTTP/1.0, pipelining, backpressure, errors, bad headers, disconnect, lifespan."""

import json
import os
import time

from tests.app.client import APPS, fetch
from tests.conftest import http_exchange, read_responses, wait_until


def app(serve, target, *flags, **kwargs):
    return serve("--app-dir", APPS, f"asgi_apps:{target}", *flags, **kwargs)


get = fetch


def test_scope(serve):
    server = app(serve, "scope_echo", "--root-path", "/api")  # the proxy stripped /api: path gets it back
    response, body = get(server, "/a%20b/c?x=1&y=%20", headers={"X-Custom": "Value", "x-custom": "two"})
    scope = json.loads(body)
    assert response.status == 200
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/api/a b/c"
    assert scope["raw_path"] == "/api/a%20b/c"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == "/api"
    assert ["x-custom", "Value"] in scope["headers"] and ["x-custom", "two"] in scope["headers"]
    assert scope["headers"].index(["x-custom", "Value"]) < scope["headers"].index(["x-custom", "two"])
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["state"] == {"db": "connected"}


def test_each_request_gets_its_own_asgi_and_extensions(serve):
    server = app(serve, "scope_meddler")  # changes them after reading them, as a middleware might
    pristine = {"asgi": {"version": "3.0", "spec_version": "2.4"},
                "extensions": {"http.response.pathsend": {}, "http.response.trailers": {}}}
    with server.connect() as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n")
        answers = [json.loads(body) for _, _, body in read_responses(sock, 2)]
    answers.append(json.loads(get(server, "/3")[1]))  # on another connection
    assert answers == [pristine] * 3


def test_a_path_with_bytes_that_are_not_utf8(serve_shared):
    server = app(serve_shared, "scope_echo")
    scope = json.loads(get(server, "/a%FFb/caf%C3%A9%E9")[1])
    assert scope["path"] == "/a\ufffdb/caf\u00e9\ufffd"  # replaced, as uvicorn does: no lone surrogates
    assert scope["raw_path"] == "/a%FFb/caf%C3%A9%E9"  # exact
    encoder = app(serve_shared, "path_encoder")  # encodes its path: a surrogate would make it a 500
    response, body = get(encoder, "/a%FFb")
    assert (response.status, body) == (200, "/a\ufffdb".encode())


def test_lifespan_shutdown_runs_on_stop(serve):
    server = app(serve, "scope_echo")
    server.stop()
    assert "lifespan shutdown ran" in server.read_output()


def test_factory_and_class_instance(serve):
    server = app(serve, "make_app", "--factory")
    assert json.loads(get(server, "/f")[1])["path"] == "/f"
    server = app(serve, "instance")
    assert get(server, "/")[1] == b"class"


def test_body_streamed_in_messages(serve):
    server = app(serve, "echo_body")
    payload = os.urandom(3 << 20)
    response, body = get(server, "/", "POST", payload)
    answer = json.loads(body)
    assert answer["length"] == len(payload)
    assert answer["messages"] > 1  # delivered as it arrived, not buffered whole
    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with server.connect() as sock:
        reply = http_exchange(sock, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                    b"Connection: close\r\n\r\n" + chunked)
    assert b'"length": 11' in reply


def test_streaming_response_chunked_or_with_length(serve_shared):
    server = app(serve_shared, "stream")
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in reply.lower()
    assert reply.endswith(b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
    response, body = get(server, "/?length=1")
    assert response.getheader("content-length") == "13" and body == b"one,two,three"


def test_head_drops_body(serve_shared):
    server = app(serve_shared, "stream")
    with server.connect() as sock:
        reply = http_exchange(sock, b"HEAD /?length=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /?length=1 HTTP/1.1\r\n"
                                    b"Host: t\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200") == 2
    assert reply.endswith(b"\r\n\r\none,two,three") and reply.count(b"one,") == 1


def test_pipelined_requests_answered_in_order(serve_shared):
    server = app(serve_shared, "slow")
    requests = b"".join(b"GET /%d?%s HTTP/1.1\r\nHost: t\r\n\r\n" % (i, b"0.05" if i % 2 == 0 else b"0")
                        for i in range(6))
    with server.connect() as sock:
        reply = http_exchange(sock, requests + b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in reply.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/5", b"/last"]


def test_slow_request_does_not_block_others(serve_shared):
    server = app(serve_shared, "slow")
    slow = server.connect()
    slow.sendall(b"GET /slow?1.5 HTTP/1.1\r\nHost: t\r\n\r\n")
    started = time.monotonic()
    assert get(server, "/fast")[1] == b"/fast"
    assert time.monotonic() - started < 1.0
    assert b"/slow" in slow.recv(1000)
    slow.close()


def test_backpressure_large_response(serve, tmp_path):
    server = app(serve, "big")
    record = tmp_path / "send-time"
    with server.connect() as sock:
        sock.sendall(b"GET /?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % str(record).encode())
        time.sleep(0.5)  # send must wait for us rather than buffer 8 MiB
        received = 0
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    assert received > 8 << 20
    assert wait_until(lambda: record.exists() and record.read_text(), 2)
    assert float(record.read_text()) >= 0.4


def test_exception_before_start_gives_500_and_worker_lives(serve):
    server = app(serve, "raises_before")
    server.tracebacks_expected = True
    response, _ = get(server, "/")
    assert response.status == 500
    assert get(server, "/ok")[1] == b"ok"
    workers = server.workers()
    assert get(server, "/ok")[1] == b"ok" and server.workers() == workers
    server.stop()
    assert "boom before start" in server.read_output()


def test_exception_after_start_closes_connection(serve):
    server = app(serve, "raises_after")
    server.tracebacks_expected = True
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and b"partial" in reply
    assert not reply.endswith(b"0\r\n\r\n")  # cut off, not a complete chunked body


def test_no_response_is_500(serve):
    server = app(serve, "no_response")
    assert get(server, "/")[0].status == 500
    server.stop()
    assert "without sending a response" in server.read_output()


def test_bad_headers_refused(serve):
    server = app(serve, "bad_header")
    for path in ("/value", "/name", "/nul"):
        with server.connect() as sock:
            reply = http_exchange(sock, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                  % path.encode())
        assert reply.startswith(b"HTTP/1.1 500"), reply
        assert b"evil" not in reply and b"never" not in reply
    server.stop()
    output = server.read_output()
    assert "x-split" in output and "bad name" in output and "x-nul" in output


def test_disconnect_reaches_app(serve, tmp_path):
    server = app(serve, "disconnect")
    record = tmp_path / "seen"
    with server.connect() as sock:
        sock.sendall(b"GET /wait?%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(record).encode())
        time.sleep(0.1)
    assert wait_until(lambda: record.exists() and record.read_text() == "http.disconnect", 3)


def test_lifespan_startup_failure_stops_without_restart_loop(serve):
    server = app(serve, "startup_fails", ready=False, port=None, workers=2)
    server.expected_exit = None
    assert server.proc.wait(10) == 2
    output = server.read_output()
    assert output.count("database unreachable") == 1
    assert output.strip().splitlines()[-1] == (
        "fastcluster: error: no worker could start: lifespan startup failed: database unreachable")


def test_bad_request_gets_400(serve_shared):
    server = app(serve_shared, "scope_echo")
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                                    b"Content-Length: 2\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
