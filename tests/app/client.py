"""What the app tests share: where their apps live, a one-request client, a client that stops reading, and an
upload the app holds back."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time

APPS = os.path.dirname(__file__)


def fetch(server, path, method="GET", body=None, headers=None):
    """One request on a fresh connection: (response, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def stalled_download(server, progress) -> tuple[socket.socket, int]:
    """Ask an app for /big (it counts the 64 KiB pieces it has sent into `progress`), read nothing for half
    a second, and return the socket and how far the app got meanwhile."""
    sock = server.connect(timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(b"GET /big?%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % str(progress).encode())
    time.sleep(0.5)
    return sock, int(progress.read_text())


def gated_upload(server, path: bytes, gate) -> None:
    """POST 32 MiB to an app that reads nothing of it until the file `gate` exists: the worker must stop
    reading (the client's sends block) and, once the gate opens, the app must get the body whole (it answers
    with the length and SHA-256 it read)."""
    from tests.conftest import read_responses

    payload = os.urandom(32 << 20)
    with server.connect() as sock:
        sock.sendall(b"POST %s?%s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                     % (path, bytes(gate), len(payload)))
        sock.settimeout(0.5)
        sent = 0
        try:
            while sent < len(payload):
                sent += sock.send(payload[sent:sent + (1 << 20)])
        except socket.timeout:  # TimeoutError from Python 3.10 on
            pass
        assert sent < len(payload) // 2, "the worker kept reading a body its app was not reading"
        gate.touch()
        sock.settimeout(10)
        sock.sendall(payload[sent:])
        [(_, _, body)] = read_responses(sock, 1, timeout=10)
    answer = json.loads(body)
    assert (answer["length"], answer["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())


# A chunked POST whose first chunk (2 KiB) is over --max-body 1000.
OVER_LIMIT = (b"POST /read HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"
              + b"a" * 2048 + b"\r\n")
# Absolute-form targets llhttp takes and the URL parser refuses: alone, with a body, behind a request.
UNSPLITTABLE = (b"GET http://a:99999/x HTTP/1.1\r\nHost: t\r\n\r\n",
                b"POST http://a:99999/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"
                b"GET http://[::1/ HTTP/1.1\r\nHost: t\r\n\r\n")


def assert_error_follows_first(reply: bytes) -> None:
    """reply is the app's answer to /first, then our 400 or 413 for the bad request behind it."""
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n\r\n/first" in reply, reply
    error = reply[reply.index(b"/first") + 6:]
    assert error.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 413 ")) and b"Connection: close" in error, reply
