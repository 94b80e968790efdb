"""Real frameworks on fastcluster: Starlette (ASGI) and Flask (WSGI), over real sockets."""

import http.client
import json
import os
import time

from tests.conftest import http_exchange

APPS = os.path.dirname(__file__)


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_starlette(serve):
    server = serve("--app-dir", APPS, "framework_apps:starlette_app")
    response, body = request(server, "GET", "/items/42?q=find")
    assert response.status == 200
    assert json.loads(body) == {"id": 42, "q": "find", "greeting": "hello from lifespan"}
    assert request(server, "GET", "/items/nope")[0].status == 404
    response, body = request(server, "POST", "/items", json.dumps({"a": [1, 2]}),
                             {"Content-Type": "application/json"})
    assert response.status == 201 and json.loads(body)["received"] == {"a": [1, 2]}
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET /numbers HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in reply.lower() and b"2\r\n4\n\r\n0\r\n\r\n" in reply
    assert request(server, "GET", "/remember?tag=t1")[1] == b"later"
    time.sleep(0.1)
    assert "t1" in json.loads(request(server, "GET", "/recall")[1])


def test_flask(serve):
    server = serve("--app-dir", APPS, "framework_apps:flask_app")
    response, body = request(server, "POST", "/form", "name=Ada&tag=a&tag=b",
                             {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(body) == {"name": "Ada", "tags": ["a", "b"]}
    content = os.urandom(200_000)
    boundary = "fastclusterboundary"
    upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.bin\"\r\n"
              f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    response, body = request(server, "POST", "/upload", upload,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    answer = json.loads(body)
    assert answer["filename"] == "data.bin" and answer["size"] == len(content)
    assert answer["head"] == content[:10].decode("latin-1")
    with server.connect() as sock:
        reply = http_exchange(sock, b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reply.endswith(b"7\r\nline 3\n\r\n0\r\n\r\n")
