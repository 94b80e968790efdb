"""One client connection of an app-serving worker: parses with httptools, queues pipelined requests so
they are answered in order, streams request bodies with flow control and writes responses with the
framing HTTP/1.1 needs (Content-Length kept, chunked otherwise, nothing for HEAD/204/304)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from http import HTTPStatus

import httptools

from fastcluster.app.headers import encode_headers

log = logging.getLogger("fastcluster.app")

#: Body bytes buffered for an app that has not read them yet before we stop reading the socket.
BODY_HIGH_WATER = 256 * 1024
#: Pipelined requests queued behind the one in flight before we stop reading the socket.
QUEUE_HIGH_WATER = 32

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown"))


class Request:
    """One request on a connection, from its head to the end of its response."""

    __slots__ = ("method", "url", "headers", "http_version", "keep_alive", "chunks", "buffered",
                 "complete", "waiter", "expect_continue", "head_only", "chunked", "no_body",
                 "started", "finished")

    def __init__(self, method: bytes, url: bytes, headers: list, http_version: str, keep_alive: bool):
        self.method = method
        self.url = url
        self.headers = headers
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.waiter: asyncio.Future | None = None
        self.expect_continue = False
        self.head_only = method == b"HEAD"
        self.chunked = False
        self.no_body = False
        self.started = False
        self.finished = False

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HttpConnection(asyncio.Protocol):
    def __init__(self, server) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list = []
        self.header_bytes = 0
        self.parsing: Request | None = None
        self.queue: deque[Request] = deque()
        self.current: Request | None = None
        self.lost = False
        self.closing = False
        self.reading_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None
        self.client: tuple | None = None
        self.sockname: tuple | None = None
        self.last_activity = time.monotonic()
        self.head_started: float | None = None

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = tuple(peer[:2]) if isinstance(peer, tuple) else None
        self.sockname = tuple(sock[:2]) if isinstance(sock, tuple) else None
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.answer_error(400, b"Upgrade is not supported")
        except (httptools.HttpParserError, RequestRejected):
            self.answer_error(400, b"Bad Request")  # no-op when a callback already answered

    def connection_lost(self, exc) -> None:
        self.lost = True
        self.server.connections.discard(self)
        for request in (self.current, *self.queue):
            if request is not None:
                request.wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.head_started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.server.limits.max_request_line:
            self.reject(414, b"URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        self.headers.append((name.lower(), value))
        if len(self.headers) > self.server.limits.max_headers or \
                self.header_bytes > self.server.limits.max_header_bytes:
            self.reject(431, b"Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.head_started = None
        request = Request(parser.get_method(), self.url, self.headers, parser.get_http_version(),
                          parser.should_keep_alive())
        for name, value in self.headers:
            if name == b"expect" and value.lower() == b"100-continue":
                request.expect_continue = True
            elif name == b"content-length" and value.isdigit() and int(value) > self.server.limits.max_body:
                self.reject(413, b"Content Too Large")
        self.parsing = request
        if self.current is None:
            self.start(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= QUEUE_HIGH_WATER:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        request.buffered += len(body)
        if request.buffered > self.server.limits.max_body:
            self.reject(413, b"Content Too Large")
        request.chunks.append(body)
        request.wake()
        if request.buffered > BODY_HIGH_WATER:
            self.pause_reading()

    def on_message_complete(self) -> None:
        request = self.parsing
        request.complete = True
        request.wake()
        self.parsing = None

    # flow control
    def pause_reading(self) -> None:
        if not self.reading_paused and not self.lost:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.lost and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def take_body(self, request: Request) -> bytes:
        """The body bytes that arrived so far, handed over once; lets the client send more."""
        if request.expect_continue:
            request.expect_continue = False
            if not request.started and not request.complete:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        data = b"".join(request.chunks) if len(request.chunks) != 1 else request.chunks[0]
        request.chunks.clear()
        request.buffered = 0
        if len(self.queue) < QUEUE_HIGH_WATER:
            self.resume_reading()
        return data

    async def wait_body(self, request: Request) -> None:
        if request.expect_continue:
            self.take_body(request)
        request.waiter = self.loop.create_future()
        await request.waiter
        request.waiter = None

    async def drain(self) -> None:
        if self.write_paused and not self.lost:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter
            self.drain_waiter = None

    # responses
    def start(self, request: Request) -> None:
        self.current = request
        self.server.in_flight += 1
        self.server.handle(self, request)

    def response_head(self, request: Request, status: int, headers) -> bytes:
        """The response head for the app's status and headers (raises BadHeader)."""
        head, content_length, close = encode_headers(headers, status_line(status))
        if close or self.server.draining:
            request.keep_alive = False
        request.no_body = status < 200 or status in (204, 304)
        extra = [self.server.date_header]
        if self.server.server_header is not None:
            extra.append(self.server.server_header)
        if content_length is None and not request.no_body:
            if request.http_version == "1.1":
                request.chunked = True
                extra.append(b"transfer-encoding: chunked")
            else:
                request.keep_alive = False
        if not request.keep_alive:
            extra.append(b"connection: close")
        elif request.http_version == "1.0":
            extra.append(b"connection: keep-alive")
        request.started = True
        return head + b"\r\n" + b"\r\n".join(extra) + b"\r\n\r\n"

    def frame(self, request: Request, data: bytes, more: bool) -> bytes:
        """Body bytes as they go on the wire (chunk framing, nothing for HEAD)."""
        if request.head_only or request.no_body:
            return b""
        if request.chunked:
            if data:
                data = b"%x\r\n%b\r\n" % (len(data), data)
            if not more:
                data += b"0\r\n\r\n"
        return data

    def write(self, data: bytes) -> None:
        if data and not self.lost:
            self.transport.write(data)

    def finish(self, request: Request, abort: bool = False) -> None:
        """The app is done with this request: close or go on with the next queued one."""
        request.finished = True
        self.server.in_flight -= 1
        self.current = None
        if self.lost:
            return
        if abort or not request.keep_alive or not request.complete:
            self.close()  # an unread body would be parsed as the next request
            return
        self.last_activity = time.monotonic()
        if self.queue:
            self.start(self.queue.popleft())
        if len(self.queue) < QUEUE_HIGH_WATER and (self.current is None or self.current.buffered < BODY_HIGH_WATER):
            self.resume_reading()
        if self.server.draining and self.current is None:
            self.close()

    def reject(self, status: int, reason: bytes) -> None:
        """From a parser callback: answer a bad request ourselves, close, and stop parsing."""
        self.answer_error(status, reason)
        raise RequestRejected

    def answer_error(self, status: int, reason: bytes) -> None:
        if not self.closing and self.current is None:
            body = reason + b"\n"
            self.write(status_line(status) + b"\r\n" + self.server.date_header +
                       b"\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                       + body)
        self.close()

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()

    def idle(self) -> bool:
        return self.current is None and not self.queue


class RequestRejected(Exception):
    """Raised out of a parser callback to stop parsing a connection we just answered with an error."""
