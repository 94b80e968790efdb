"""The ASGI 3 adapter (HTTP and lifespan): one AsgiConnection per connection turns the requests our Cython
connection parses into scopes, runs the app as an asyncio task per request (pipelined requests wait their
turn), streams bodies both ways with flow control, and frames what the app sends."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from urllib.parse import unquote

from httptools import parse_url

from fastcluster.app.response import NO_BODY, BadResponse, checked_headers, error_page, head

log = logging.getLogger("fastcluster.app")

ASGI = {"version": "3.0", "spec_version": "2.4"}
#: Request body buffered for an app that has not asked for it yet, before we stop reading the socket.
BODY_BUFFER = 256 * 1024


METHODS = {name.encode(): name for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


def split_target(url: bytes) -> tuple[bytes, bytes]:
    """(path, query) of a request target, origin-form (the usual case, split here) or absolute-form."""
    if url[:1] == b"/":
        path, _, query = url.partition(b"?")
        return path.partition(b"#")[0], query.partition(b"#")[0]
    parsed = parse_url(url)
    return parsed.path or b"/", parsed.query or b""


def decode_path(raw_path: bytes) -> str:
    """The percent-decoded UTF-8 path ASGI wants (and WSGI's PATH_INFO is its latin-1 twin)."""
    if b"%" not in raw_path:
        return raw_path.decode("utf-8", "surrogateescape")
    return unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="surrogateescape")


def peer_of(fd: int) -> tuple[str, int] | None:
    sock = socket.socket(fileno=os.dup(fd))
    try:
        address = sock.getpeername()
    except OSError:
        return None
    finally:
        sock.close()
    return (address[0], address[1]) if isinstance(address, tuple) else None


class AsgiServer:
    """What every connection of a worker shares: the app, the loop, the lifespan state, the addresses."""

    def __init__(self, app, loop: asyncio.AbstractEventLoop, responder, *, root_path: str = "",
                 server: tuple[str, int] | None = None, server_header: bytes | None = b"fastcluster",
                 max_output: int = 256 * 1024) -> None:
        self.app = app
        self.loop = loop
        self.responder = responder
        self.root_path = root_path
        self.server = server
        self.server_header = server_header
        self.max_output = max_output
        self.state: dict = {}

    def adapter(self, conn) -> AsgiConnection:
        return AsgiConnection(self, conn)

    # ---- lifespan ----

    async def startup(self, mode: str) -> None:
        """Run the app's lifespan startup; raise RuntimeError with the app's message when it fails."""
        if mode == "off":
            return
        self.lifespan_events: asyncio.Queue = asyncio.Queue()
        self.lifespan_done: asyncio.Future = self.loop.create_future()
        self.lifespan_task = self.loop.create_task(self.run_lifespan(mode))
        await self.lifespan_events.put({"type": "lifespan.startup"})
        outcome = await self.lifespan_done
        if outcome is not None:
            raise RuntimeError(outcome)

    async def run_lifespan(self, mode: str) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self.lifespan_events.get, self.lifespan_send)
        except BaseException as exc:
            if not self.lifespan_done.done():
                if mode == "on":
                    self.lifespan_done.set_result(f"lifespan failed: {type(exc).__name__}: {exc}")
                else:  # auto: an app that does not speak lifespan
                    log.debug("the app does not support lifespan (%s); going on without it", exc)
                    self.lifespan_done.set_result(None)
            else:
                log.error("lifespan task failed: %s: %s", type(exc).__name__, exc)
        finally:
            if not self.lifespan_done.done():
                self.lifespan_done.set_result(None)

    async def lifespan_send(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.lifespan_done.set_result(None)
        elif kind == "lifespan.startup.failed":
            self.lifespan_done.set_result(f"lifespan startup failed: {message.get('message', '')}")
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if kind.endswith("failed"):
                log.error("lifespan shutdown failed: %s", message.get("message", ""))
            self.shutdown_done.set_result(None)

    async def shutdown(self) -> None:
        task = getattr(self, "lifespan_task", None)
        if task is None or task.done():
            return
        self.shutdown_done: asyncio.Future = self.loop.create_future()
        await self.lifespan_events.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self.shutdown_done), 10)
        except asyncio.TimeoutError:
            log.warning("lifespan shutdown did not complete within 10 s")


class Exchange:
    """One request and its response."""

    __slots__ = ("conn", "scope", "body", "buffered", "more_body", "end_delivered", "keep_alive", "head_only",
                 "started_at", "status", "response_started", "pending_head", "sent", "chunked", "complete",
                 "wakeup", "disconnected")

    def __init__(self, conn: AsgiConnection, scope: dict, keep_alive: bool, started_at: float) -> None:
        self.conn = conn
        self.scope = scope
        self.body: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.end_delivered = False
        self.keep_alive = keep_alive
        self.head_only = scope["method"] == "HEAD"
        self.started_at = started_at
        self.status = 0
        self.response_started = False
        self.pending_head: tuple | None = None
        self.sent = 0
        self.chunked = False
        self.complete = False
        self.disconnected = False
        self.wakeup: asyncio.Future | None = None

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    # The app's receive and send: bound methods, so a request costs no closures.

    async def receive(self) -> dict:
        while True:
            if self.body:
                data = b"".join(self.body) if len(self.body) > 1 else self.body[0]
                self.body.clear()
                if self.buffered > BODY_BUFFER and not self.conn.conn.closed:
                    self.conn.conn.set_reading(True)
                self.buffered = 0
                self.end_delivered = not self.more_body
                return {"type": "http.request", "body": data, "more_body": self.more_body}
            if not self.more_body and not self.end_delivered:
                self.end_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            self.wakeup = self.conn.server.loop.create_future()
            await self.wakeup

    async def send(self, message: dict) -> None:
        owner = self.conn
        if self.disconnected:
            raise OSError("the client has gone away")  # uvicorn raises too; apps stop streaming on it
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise BadResponse("http.response.start sent twice")
            self.status = message["status"]
            lines, length = checked_headers(message.get("headers", ()))
            self.response_started = True
            self.pending_head = (lines, length)
            return
        if kind != "http.response.body":
            raise BadResponse(f"unexpected message {kind!r}")
        if not self.response_started or self.complete:
            raise BadResponse("http.response.body outside a response")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        parts = []
        if self.pending_head is not None:
            lines, length = self.pending_head
            self.pending_head = None
            no_body = self.status in NO_BODY or self.status < 200
            if length is None and not no_body:
                if more:
                    self.chunked = not self.head_only
                else:
                    length = len(body)
            parts.append(head(self.status, lines, length, self.chunked, self.keep_alive,
                              owner.server.responder.date, owner.server.server_header))
        if body and not self.head_only:
            parts.append(b"%x\r\n%b\r\n" % (len(body), body) if self.chunked else body)
        if not more and self.chunked:
            parts.append(b"0\r\n\r\n")
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            self.sent += len(data)
            owner.conn.send(data)
        if not more:
            owner.finish(self, self.keep_alive)
        elif owner.conn.output_waiting > owner.server.max_output and not owner.conn.closed:
            owner.drain_waiter = owner.server.loop.create_future()
            await owner.drain_waiter


class AsgiConnection:
    def __init__(self, server: AsgiServer, conn) -> None:
        self.server = server
        self.conn = conn
        self.exchanges: deque[Exchange] = deque()
        self.client: tuple[str, int] | None | bool = False  # False: not looked up yet
        self.drain_waiter: asyncio.Future | None = None

    # ---- called by the Cython connection while it parses ----

    def request(self, method: bytes, url: bytes, http11: bool, headers: list, keep_alive: bool) -> None:
        raw_path, query = split_target(url)
        if self.client is False:
            self.client = peer_of(self.conn.fd)
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1" if http11 else "1.0",
            "method": METHODS.get(method) or method.decode("ascii"),
            "scheme": "http",
            "path": decode_path(raw_path),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": self.server.root_path,
            "headers": headers,
            "client": self.client,
            "server": self.server.server,
            "state": self.server.state.copy(),
        }
        exchange = Exchange(self, scope, keep_alive, self.conn.now)
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            self.server.loop.create_task(self.run(exchange))

    def body(self, data: bytes) -> None:
        exchange = self.exchanges[-1]
        exchange.body.append(data)
        exchange.buffered += len(data)
        if exchange.buffered > BODY_BUFFER:
            self.conn.set_reading(False)  # the app reads slower than the client sends
        exchange.wake()

    def message_complete(self) -> bool:
        exchange = self.exchanges[-1]
        exchange.more_body = False
        exchange.wake()
        return exchange.keep_alive

    def drained(self) -> None:
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def connection_lost(self) -> None:
        for exchange in self.exchanges:
            exchange.disconnected = True
            exchange.wake()
        self.drained()

    # ---- the app's side ----

    async def run(self, exchange: Exchange) -> None:
        try:
            await self.server.app(exchange.scope, exchange.receive, exchange.send)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if exchange.disconnected:
                log.info("the client left during %s %s", exchange.scope["method"], exchange.scope["path"])
                return
            self.app_failed(exchange, f"{type(exc).__name__}: {exc}", exc)
        else:
            if not exchange.response_started and not exchange.disconnected:
                self.app_failed(exchange, "the app returned without sending a response", None)
            elif not exchange.complete and not exchange.disconnected:
                log.error("the app returned before finishing its response to %s %s; closing the connection",
                          exchange.scope["method"], exchange.scope["path"])
                self.finish(exchange, keep_alive=False)

    def app_failed(self, exchange: Exchange, reason: str, exc: BaseException | None) -> None:
        log.error("the app failed on %s %s: %s", exchange.scope["method"], exchange.scope["path"], reason,
                  exc_info=exc if exc is not None and not isinstance(exc, BadResponse) else None)
        if exchange.disconnected or exchange.complete:
            return
        if exchange.response_started:
            self.finish(exchange, keep_alive=False)  # too late for a 500: cut the response short
            return
        exchange.response_started = True
        exchange.status = 500
        page = error_page(500, exchange.keep_alive, self.server.responder.date, self.server.server_header)
        exchange.sent += len(page)
        self.conn.send(page)
        self.finish(exchange, exchange.keep_alive)

    def log_access(self, exchange: Exchange) -> None:
        scope = exchange.scope
        target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        headers = dict(scope["headers"])
        self.conn.log_access(scope["method"].encode("latin-1"), target, scope["http_version"],
                             exchange.status, exchange.sent, headers.get(b"referer"),
                             headers.get(b"user-agent"))

    def finish(self, exchange: Exchange, keep_alive: bool) -> None:
        exchange.complete = True
        exchange.wake()
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if not self.conn.closed:
            if self.conn.logs_access:
                self.log_access(exchange)
            self.conn.answered(exchange.status, exchange.started_at, keep_alive)
        if self.exchanges and keep_alive:
            self.server.loop.create_task(self.run(self.exchanges[0]))
