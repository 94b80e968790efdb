"""The WSGI (PEP 3333) adapter: buffers each request's body, then calls the app inline in the worker's
loop (fastest for fast apps) or, with --threads N, on a thread pool so a slow request does not hold up the
worker's other connections. Small answers leave in one piece; iterables are streamed as they yield, with
backpressure. close() of the result is always called."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

from fastcluster.app.asgi import METHODS, peer_of, split_target
from fastcluster.app.response import NO_BODY, BadResponse, checked_headers, error_page, head

log = logging.getLogger("fastcluster.app")

#: A response whose iterable is neither a list nor a tuple is streamed unless it declared at most this many
#: bytes in Content-Length (then it is gathered and sent in one piece, the fast path).
STREAM_ABOVE = 65536
#: The end of an iterable.
DONE = object()


class Reply:
    """What start_response and write() received for one call."""

    __slots__ = ("status", "head", "written", "sent")

    def __init__(self) -> None:
        self.status = 0
        self.head: tuple[list[bytes], int | None] | None = None
        self.written: list[bytes] = []
        self.sent = False


class Stream:
    """A response to send piece by piece: the call's Reply and the app's iterable."""

    __slots__ = ("reply", "iterator", "result", "head_only")

    def __init__(self, reply: Reply, iterator, result, head_only: bool) -> None:
        self.reply = reply
        self.iterator = iterator
        self.result = result
        self.head_only = head_only


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks (and closes it with the response)."""

    def __init__(self, filelike, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        while True:
            block = self.filelike.read(self.block_size)
            if not block:
                return
            yield block


class WsgiServer:
    def __init__(self, app, loop: asyncio.AbstractEventLoop, responder, *, threads: int = 0,
                 root_path: str = "", server: tuple[str, int] | None = None,
                 server_header: bytes | None = b"fastcluster", max_output: int = 256 * 1024) -> None:
        self.app = app
        self.loop = loop
        self.responder = responder
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="wsgi") if threads else None
        self.root_path = root_path
        self.server = server or ("", 0)
        self.server_header = server_header
        self.max_output = max_output

    def adapter(self, conn) -> WsgiConnection:
        return WsgiConnection(self, conn)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class Call:
    __slots__ = ("environ", "body", "keep_alive", "started_at")

    def __init__(self, environ: dict, keep_alive: bool, started_at: float) -> None:
        self.environ = environ
        self.body: list[bytes] = []
        self.keep_alive = keep_alive
        self.started_at = started_at


class WsgiConnection:
    def __init__(self, server: WsgiServer, conn) -> None:
        self.server = server
        self.conn = conn
        self.calls: deque[Call] = deque()
        self.ready: deque[Call] = deque()  # bodies complete, waiting for their turn
        self.running = False
        self.client: tuple[str, int] | None | bool = False
        self.drain_waiter: asyncio.Future | None = None

    def request(self, method: bytes, url: bytes, http11: bool, headers: list, keep_alive: bool) -> None:
        raw_path, query = split_target(url)
        if self.client is False:
            self.client = peer_of(self.conn.fd)
        host, port = self.server.server[:2]
        environ = {
            "REQUEST_METHOD": METHODS.get(method) or method.decode("ascii"),
            "SCRIPT_NAME": self.server.root_path,
            "PATH_INFO": unquote(raw_path.decode("latin-1"), encoding="latin-1") if b"%" in raw_path
            else raw_path.decode("latin-1"),
            "QUERY_STRING": query.decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1" if http11 else "HTTP/1.0",
            "RAW_URI": url.decode("latin-1"),
            "REMOTE_ADDR": self.client[0] if self.client else "",
            "REMOTE_PORT": str(self.client[1]) if self.client else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.server.pool is not None,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        for name, value in headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = value.decode("latin-1")
            else:
                key = "HTTP_" + key
                text = value.decode("latin-1")
                environ[key] = environ[key] + "," + text if key in environ else text
        self.calls.append(Call(environ, keep_alive, self.conn.now))

    def body(self, data: bytes) -> None:
        self.calls[-1].body.append(data)

    def message_complete(self) -> bool:
        call = self.calls.pop()
        call.environ["wsgi.input"] = io.BytesIO(b"".join(call.body))
        call.environ.setdefault("CONTENT_LENGTH", str(call.environ["wsgi.input"].getbuffer().nbytes))
        call.body = []
        if not self.running and self.server.pool is None and call.keep_alive:
            # Nothing ahead of it and no pool: answer now, while the connection parses, so the answers to
            # the requests of one read leave together (as the built-in responder's do).
            outcome = self.call_app(call)
            if isinstance(outcome, Stream):
                self.running = True
                self.server.loop.create_task(self.stream(call, outcome))
                return call.keep_alive
            status, chunks, keep_alive = outcome
            for chunk in chunks:
                self.conn.write_answer(chunk)
            if self.conn.logs_access:
                self.log_access(call, status, sum(map(len, chunks)))
            self.conn.answered(status, call.started_at, keep_alive)
            return keep_alive
        self.ready.append(call)
        if not self.running:
            self.running = True
            self.server.loop.call_soon(self.next)
        return call.keep_alive

    def drained(self) -> None:
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def connection_lost(self) -> None:
        self.ready.clear()
        self.drained()

    def next(self) -> None:
        if not self.ready or self.conn.closed:
            self.running = False
            return
        call = self.ready.popleft()
        if self.server.pool is None:
            self.done(call, self.call_app(call))
        else:
            future = self.server.loop.run_in_executor(self.server.pool, self.call_app, call)
            future.add_done_callback(lambda f: self.done(call, f.result()))

    def done(self, call: Call, outcome: tuple[int, list[bytes], bool] | Stream) -> None:
        if isinstance(outcome, Stream):
            self.server.loop.create_task(self.stream(call, outcome))
            return
        status, chunks, keep_alive = outcome
        if not self.conn.closed:
            for chunk in chunks:
                self.conn.send(chunk)
            if self.conn.logs_access:
                self.log_access(call, status, sum(map(len, chunks)))
            self.conn.answered(status, call.started_at, keep_alive)
        self.after(keep_alive)

    def after(self, keep_alive: bool) -> None:
        if keep_alive:
            self.next()
        else:
            self.running = False

    def call_app(self, call: Call) -> tuple[int, list[bytes], bool] | Stream:
        """Run the app: (status, output pieces, keep-alive) when its whole answer is at hand (a list or
        tuple, or at most STREAM_ABOVE bytes it declared in Content-Length), else a Stream that stream()
        sends piece by piece as the iterable yields them. Runs in the loop or in a pool thread."""
        environ = call.environ
        head_only = environ["REQUEST_METHOD"] == "HEAD"
        reply = Reply()
        keep_alive = call.keep_alive
        date, server_header = self.server.responder.date, self.server.server_header

        def start_response(status, headers, exc_info=None):
            if exc_info is not None:
                try:
                    if reply.head is not None and reply.sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif reply.head is not None:
                raise BadResponse("start_response called twice without exc_info")
            code = status.split(" ", 1)[0]
            if not code.isdigit():
                raise BadResponse(f"invalid status {status!r}")
            reply.status = int(code)
            reply.head = checked_headers(headers)
            return reply.written.append

        result = None
        streaming = False
        try:
            result = self.server.app(environ, start_response)
            if not isinstance(result, (list, tuple)):
                declared = reply.head[1] if reply.head is not None else None
                if declared is None or declared > STREAM_ABOVE:
                    streaming = True
                    return Stream(reply, iter(result), result, head_only)
            body = list(reply.written)
            for piece in result:
                if piece:
                    body.append(bytes(piece))
            if reply.head is None:
                raise BadResponse("the app did not call start_response")
            lines, length = reply.head
            status = reply.status
            payload = b"".join(body)
            if length is not None and length != len(payload):
                raise BadResponse(f"Content-Length {length} but {len(payload)} bytes of body")
            if status in NO_BODY or status < 200:
                payload, length = b"", None
            else:
                length = len(payload)
            start = head(status, lines, length, False, keep_alive, date, server_header)
            return status, [start if head_only else start + payload], keep_alive
        except Exception as exc:
            self.log_failure(environ, exc)
            return 500, [error_page(500, keep_alive, date, server_header)], keep_alive
        finally:
            if not streaming:
                close_result(result)

    def log_access(self, call: Call, status: int, size: int) -> None:
        environ = call.environ
        referer, user_agent = environ.get("HTTP_REFERER"), environ.get("HTTP_USER_AGENT")
        self.conn.log_access(environ["REQUEST_METHOD"].encode("latin-1"),
                             environ["RAW_URI"].encode("latin-1"), environ["SERVER_PROTOCOL"][5:], status,
                             size,
                             referer.encode("latin-1") if referer else None,
                             user_agent.encode("latin-1") if user_agent else None)

    def log_failure(self, environ: dict, exc: Exception) -> None:
        log.error("the app failed on %s %s: %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"],
                  type(exc).__name__, exc, exc_info=not isinstance(exc, BadResponse))

    async def stream(self, call: Call, out: Stream) -> None:
        """Send a response as the app's iterable yields it: chunked unless the app gave a Content-Length
        (close-delimited for HTTP/1.0), waiting while the client is slow. Pieces are pulled in the loop, or
        on the pool with --threads, so a slow iterable holds up only its own connection there."""
        loop, conn, reply = self.server.loop, self.conn, out.reply
        keep_alive = call.keep_alive
        date, server_header = self.server.responder.date, self.server.server_header
        status = 500
        head_size = sent = 0
        try:
            first = await self.pull(out)  # a generator app calls start_response only now
            if reply.head is None:
                raise BadResponse("the app did not call start_response")
            status = reply.status
            lines, length = reply.head
            bodyless = out.head_only or status in NO_BODY or status < 200
            chunked = length is None and not bodyless and call.environ["SERVER_PROTOCOL"] == "HTTP/1.1"
            if length is None and not bodyless and not chunked:
                keep_alive = False  # HTTP/1.0 without a length: the close ends the body
            reply.sent = True
            start = head(status, lines, None if bodyless else length, chunked, keep_alive, date,
                         server_header)
            head_size = len(start)
            conn.send(start)
            piece = first
            while piece is not DONE and not bodyless and not conn.closed:
                if piece:
                    if length is not None and sent + len(piece) > length:
                        raise BadResponse(f"more body than its Content-Length {length}")
                    sent += len(piece)
                    conn.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else bytes(piece))
                    if conn.output_waiting > self.server.max_output and not conn.closed:
                        self.drain_waiter = loop.create_future()
                        await self.drain_waiter
                piece = await self.pull(out)
            if length is not None and sent != length and not bodyless and not conn.closed:
                raise BadResponse(f"Content-Length {length} but {sent} bytes of body")
            # close() before the end of the body goes out, so a client that saw the end knows it ran.
            result, out.result = out.result, None
            close_result(result)
            if chunked and not conn.closed:
                conn.send(b"0\r\n\r\n")
        except Exception as exc:
            self.log_failure(call.environ, exc)
            if not reply.sent and not conn.closed:
                conn.send(error_page(500, keep_alive, date, server_header))
            else:
                keep_alive = False  # cut short: only closing tells the client
        finally:
            close_result(out.result)
        if not conn.closed:
            if conn.logs_access:
                self.log_access(call, status if reply.sent else 500, head_size + sent)
            conn.answered(status if reply.sent else 500, call.started_at, keep_alive)
        self.after(keep_alive and not conn.closed)

    async def pull(self, out: Stream):
        pool = self.server.pool
        if pool is None:
            return self.pull_now(out)
        return await self.server.loop.run_in_executor(pool, self.pull_now, out)

    @staticmethod
    def pull_now(out: Stream):
        """The next piece to send: what write() gathered first, then the iterable's next item; DONE at end."""
        reply = out.reply
        if reply.written:
            piece = b"".join(reply.written)
            reply.written.clear()
            return piece
        return next(out.iterator, DONE)


def close_result(result) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("the app's result failed to close")
