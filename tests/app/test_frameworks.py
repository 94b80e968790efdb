"""Real frameworks on fastcluster: a Starlette app (ASGI) and a Flask app (WSGI)."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.app.test_asgi import APPS, get
from tests.conftest import wait_until

pytest.importorskip("starlette")
pytest.importorskip("flask")


def test_starlette(serve, tmp_path):
    marker = tmp_path / "marker"
    server = serve("frameworks:starlette_app", "--app-dir", APPS, "--lifespan", "on",
                   env={"FASTCLUSTER_TEST_MARKER": str(marker)})
    status, _, body = get(server.port, "GET", "/items/42?q=find")
    assert (status, json.loads(body)) == (200, {"id": 42, "q": "find", "pool": "ready"})
    status, _, body = get(server.port, "POST", "/items", body=b'{"a": [1, 2]}',
                          headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (201, {"received": {"a": [1, 2]}})
    status, headers, body = get(server.port, "GET", "/numbers")
    assert (status, body, headers.get("transfer-encoding")) == (200, b"0\n1\n2\n", "chunked")
    assert get(server.port, "GET", "/background")[2] == b"queued"
    assert wait_until(lambda: marker.exists() and "background ran" in marker.read_text(), 3)
    assert get(server.port, "GET", "/missing")[0] == 404


def test_flask(serve_shared):
    server = serve_shared("frameworks:flask_app", "--app-dir", APPS)
    status, _, body = get(server.port, "POST", "/form", body=b"name=Ada&age=36",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, json.loads(body)) == (200, {"name": "Ada", "age": 36})
    boundary = "fcboundary"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
               f"Content-Type: text/plain\r\n\r\n{'x' * 5000}\r\n--{boundary}--\r\n").encode()
    status, _, body = get(server.port, "POST", "/upload", body=payload,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (status, json.loads(body)) == (200, {"filename": "notes.txt", "size": 5000})
    status, _, body = get(server.port, "GET", "/stream")
    assert (status, body) == (200, b"line 0\nline 1\nline 2\n")


def test_flask_head_and_streamed_teardown(serve, tmp_path):
    server = serve("frameworks:flask_app", "--app-dir", APPS, "--threads", "2")
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    client.request("HEAD", "/page")  # Flask's Content-Length, and no body: the connection carries on
    response = client.getresponse()
    assert (response.status, response.getheader("content-length"), response.read()) == (200, "16", b"")
    client.request("GET", "/page")
    assert client.getresponse().read() == b"<h1>A page</h1>\n"
    client.close()
    marker = tmp_path / "marker"
    with server.connect() as sock:  # a client leaving mid-stream: Flask's teardown runs
        sock.sendall(b"GET /endless?marker=%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(marker).encode())
        received = b""
        while len(received) < 300_000:
            data = sock.recv(65536)
            assert data, received[-200:]
            received += data
    assert received.count(b"/endless\n") > 20_000
    # Closed in the request's context, then torn down (Flask 3.1 also tears down once as the view returns).
    assert wait_until(lambda: marker.exists() and marker.read_text().endswith("closed /endless\nteardown\n"))


def test_flask_async_view(serve_shared):
    pytest.importorskip("asgiref")  # Flask runs async views through it
    server = serve_shared("frameworks:flask_app", "--app-dir", APPS)
    for _ in range(2):
        status, _, body = get(server.port, "GET", "/async")
        assert (status, json.loads(body)) == (200, {"async": True})


def test_fastapi(serve):
    pytest.importorskip("fastapi")
    server = serve("fastapi_site:app", "--app-dir", APPS)
    status, _, body = get(server.port, "GET", "/items/42?q=find", headers={"User-Agent": "tester"})
    assert (status, json.loads(body)) == (200, {"name": "item 42", "price": 9.5, "tags": ["tester"],
                                                "id": 42, "q": "find"})
    assert get(server.port, "HEAD", "/items/42")[:3:2] == (405, b"")  # FastAPI routes GET only
    assert get(server.port, "GET", "/items/404")[0] == 404
    status, _, body = get(server.port, "GET", "/items/nope")
    assert status == 422 and json.loads(body)["detail"][0]["loc"] == ["path", "item_id"]
    status, _, body = get(server.port, "POST", "/items", body=b'{"name": "pen", "price": 1.25}',
                          headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (201, {"name": "pen", "price": 1.25, "tags": [], "id": 1, "q": None})
    assert json.loads(get(server.port, "GET", "/sync")[2]) == {"thread": True}

    from websockets.sync.client import connect
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send("hi")
        assert ws.recv() == "echo: hi"
