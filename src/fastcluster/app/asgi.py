"""The ASGI 3 adapter: one HTTP request cycle (scope, receive, send) and the lifespan protocol."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote_to_bytes

from fastcluster.app.headers import BadHeader
from fastcluster.app.protocol import HttpConnection, Request

log = logging.getLogger("fastcluster.app")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
_INTERNAL_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                   b"content-length: 22\r\nconnection: close\r\n")
_ERROR_BODY = b"Internal Server Error\n"


def build_scope(conn: HttpConnection, request: Request) -> dict:
    url = request.url
    raw_path, _, query = url.partition(b"?")
    if raw_path.startswith(b"http://") or raw_path.startswith(b"https://"):
        raw_path = b"/" + raw_path.split(b"/", 3)[-1] if raw_path.count(b"/") >= 3 else b"/"
    raw_path = raw_path.partition(b"#")[0]
    server = conn.server
    root_path = server.root_path
    path = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape") if b"%" in raw_path \
        else raw_path.decode("latin-1")
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": request.http_version,
        "method": request.method.decode("ascii"),
        "scheme": "http",
        "path": root_path + path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": request.headers,
        "client": conn.client,
        "server": conn.sockname,
        "state": server.state.copy(),
    }


async def run_http(app, conn: HttpConnection, request: Request) -> None:
    status = 200
    head: bytes | None = None
    complete = False
    final_body_sent = False

    async def receive() -> dict:
        nonlocal final_body_sent
        while True:
            if request.chunks:
                body = conn.take_body(request)
                if request.complete and not request.chunks:
                    final_body_sent = True
                return {"type": "http.request", "body": body, "more_body": not request.complete}
            if request.complete and not final_body_sent:
                final_body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if complete or conn.lost:
                return {"type": "http.disconnect"}
            await conn.wait_body(request)
            if complete:
                # the response went out while this receive waited: the request is over for the app
                return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status, head, complete
        kind = message["type"]
        if kind == "http.response.body":
            if head is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            if complete:
                raise RuntimeError("http.response.body sent after the response was complete")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more:
                complete = True
            if conn.lost:
                return
            data = conn.frame(request, bytes(body), more)
            if head:
                data = head + data
                head = b""
            conn.write(data)
            if conn.write_paused:
                await conn.drain()
        elif kind == "http.response.start":
            if head is not None:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            head = conn.response_head(request, status, message.get("headers", ()))
        elif kind == "http.response.pathsend":
            if head is None or complete:
                raise RuntimeError("http.response.pathsend outside a started response")
            with open(message["path"], "rb") as file:
                contents = file.read()
            complete = True
            conn.write(head + conn.frame(request, contents, False))
            head = b""
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an HTTP request")

    scope = build_scope(conn, request)
    try:
        await app(scope, receive, send)
    except BadHeader as exc:
        log.error("%s %s: %s", scope["method"], scope["path"], exc)
        abort(conn, request, started=head == b"")
        return
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        log.exception("exception in ASGI app for %s %s", scope["method"], scope["path"])
        abort(conn, request, started=head == b"")
        return
    if not complete:
        if head is None:
            log.error("ASGI app returned without a response for %s %s", scope["method"], scope["path"])
        else:
            log.error("ASGI app returned before completing the response to %s %s", scope["method"], scope["path"])
        abort(conn, request, started=head == b"")
        return
    conn.finish(request)


def abort(conn: HttpConnection, request: Request, started: bool) -> None:
    """A failed request: 500 if nothing was sent yet, else cut the connection (a partial response)."""
    if not started and not conn.lost:
        conn.write(_INTERNAL_ERROR + conn.server.date_header + b"\r\n\r\n" +
                   (b"" if request.head_only else _ERROR_BODY))
    conn.finish(request, abort=True)


class LifespanError(Exception):
    """Startup failed (or lifespan is on and unsupported); the message is the app's."""


class Lifespan:
    """Runs the app's lifespan protocol: startup before serving, shutdown after the last request."""

    def __init__(self, app, mode: str, state: dict, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.loop = loop
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outcome: asyncio.Future = loop.create_future()
        self.task: asyncio.Task | None = None
        self.supported = True

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self.task = self.loop.create_task(self.main())
        await self.inbox.put({"type": "lifespan.startup"})
        kind, message = await self.outcome
        if kind == "lifespan.startup.failed":
            raise LifespanError(message or "lifespan startup failed")
        if kind == "unsupported":
            self.supported = False
            if self.mode == "on":
                raise LifespanError(f"the app does not support lifespan: {message}")
            log.info("lifespan not supported by the app (%s); going on without it", message)

    async def shutdown(self) -> None:
        if self.mode == "off" or not self.supported or self.task is None or self.task.done():
            return
        self.outcome = self.loop.create_future()
        await self.inbox.put({"type": "lifespan.shutdown"})
        kind, message = await self.outcome
        if kind == "lifespan.shutdown.failed":
            log.error("lifespan shutdown failed: %s", message)

    async def main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.send)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if not self.outcome.done():
                reason = f"{type(exc).__name__}: {exc}"
                if self.mode == "on":
                    log.exception("exception in lifespan")
                    self.outcome.set_result(("lifespan.startup.failed", reason))
                else:
                    self.outcome.set_result(("unsupported", reason))
            else:
                log.exception("exception in lifespan after %s", self.outcome.result()[0])
        else:
            if not self.outcome.done():
                self.outcome.set_result(("unsupported", "the lifespan call returned"))

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                        "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise RuntimeError(f"unexpected lifespan message {kind!r}")
        if not self.outcome.done():
            self.outcome.set_result((kind, message.get("message", "")))
