"""The admin listener: a small HTTP/1.0-style responder the master serves from its own loop, apart from the
main port (so load tests are not polluted): GET /metrics (Prometheus text) and GET /healthz (200 while
serving, 503 while draining). One request per connection; heads over 8 KiB are refused."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from fastcluster.binds import Bind, open_tcp

MAX_HEAD = 8192
#: A client that has not sent its request head within this many seconds is dropped.
HEAD_TIMEOUT = 5.0

Handler = Callable[[str], "tuple[int, str, bytes]"]
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


class AdminServer:
    def __init__(self, host: str, port: int, handler: Handler) -> None:
        """handler(path) -> (status, content type, body)."""
        self.handler = handler
        self.listener = open_tcp(Bind("tcp", host=host, port=port), 64, reuseport=False)
        self.clients: dict[int, tuple[socket.socket, bytes, float]] = {}

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def sockets(self) -> list[socket.socket]:
        return [self.listener] + [sock for sock, _, _ in self.clients.values()]

    def serve(self, ready: set[int]) -> None:
        if self.listener.fileno() in ready:
            while True:
                try:
                    sock, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                sock.setblocking(False)
                self.clients[sock.fileno()] = (sock, b"", time.monotonic())
        for fd in [fd for fd in ready if fd in self.clients]:
            sock, head, since = self.clients[fd]
            try:
                data = sock.recv(MAX_HEAD)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.drop(fd)
                continue
            head += data
            if b"\r\n\r\n" in head or b"\n\n" in head:
                self.respond(fd, head)
            elif len(head) > MAX_HEAD:
                self.send(fd, 400, "text/plain", b"request head too large\n")
            else:
                self.clients[fd] = (sock, head, since)
        now = time.monotonic()
        for fd in [fd for fd, (_, _, since) in self.clients.items() if now - since > HEAD_TIMEOUT]:
            self.drop(fd)

    def respond(self, fd: int, head: bytes) -> None:
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self.send(fd, 400, "text/plain", b"bad request\n")
            return
        method, target = parts[0], parts[1].decode("latin-1")
        if method not in (b"GET", b"HEAD"):
            self.send(fd, 405, "text/plain", b"only GET and HEAD\n")
            return
        status, content_type, body = self.handler(target.split("?", 1)[0])
        self.send(fd, status, content_type, b"" if method == b"HEAD" else body, len(body))

    def send(self, fd: int, status: int, content_type: str, body: bytes, length: int | None = None) -> None:
        sock = self.clients[fd][0]
        head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n")
        try:
            sock.setblocking(True)
            sock.settimeout(1.0)
            sock.sendall(head.encode() + body)
        except OSError:
            pass
        self.drop(fd)

    def drop(self, fd: int) -> None:
        sock = self.clients.pop(fd)[0]
        sock.close()

    def close(self) -> None:
        for fd in list(self.clients):
            self.drop(fd)
        self.listener.close()
