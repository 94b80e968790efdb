"""The admin listener: a small HTTP/1.0-style responder the master serves from its own loop, apart from the
main port (so load tests are not polluted): GET /metrics (Prometheus text) and GET /healthz (200 while
serving, 503 while draining). One request per connection; heads over 8 KiB are refused."""

from __future__ import annotations

from collections.abc import Callable

from fastcluster.binds import Bind, open_tcp
from fastcluster.oneshot import Client, OneShotServer

MAX_HEAD = 8192
#: A client that has not sent its request head within this many seconds is dropped.
HEAD_TIMEOUT = 5.0

Handler = Callable[[str], "tuple[int, str, bytes]"]
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


class AdminServer(OneShotServer):
    max_request = MAX_HEAD
    request_timeout = HEAD_TIMEOUT

    def __init__(self, host: str, port: int, handler: Handler) -> None:
        """handler(path) -> (status, content type, body)."""
        super().__init__(open_tcp(Bind("tcp", host=host, port=port), 64, reuseport=False))
        self.handler = handler

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def complete(self, buffer: bytes) -> bool:
        return b"\r\n\r\n" in buffer or b"\n\n" in buffer

    def too_long(self, client: Client) -> None:
        self.send(client, 400, "text/plain", b"request head too large\n")

    def serve(self, ready: set[int]) -> None:
        for client in self.receive(ready):
            self.respond(client)

    def respond(self, client: Client) -> None:
        parts = client.buffer.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self.send(client, 400, "text/plain", b"bad request\n")
            return
        method, target = parts[0], parts[1].decode("latin-1")
        if method not in (b"GET", b"HEAD"):
            self.send(client, 405, "text/plain", b"only GET and HEAD\n")
            return
        status, content_type, body = self.handler(target.split("?", 1)[0])
        self.send(client, status, content_type, b"" if method == b"HEAD" else body, len(body))

    def send(self, client: Client, status: int, content_type: str, body: bytes,
             length: int | None = None) -> None:
        head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n")
        self.reply(client, head.encode() + body)
