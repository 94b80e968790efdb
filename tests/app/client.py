"""What the app tests share: where their apps live, a one-request client, and a client that stops reading."""

from __future__ import annotations

import http.client
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
