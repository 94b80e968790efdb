"""The WSGI (PEP 3333) adapter: buffers each request's body, then calls the app inline in the worker's
loop (fastest for fast apps) or, with --threads N, on a thread pool so a slow request does not hold up the
worker's other connections. Output is framed like ASGI output; close() of the result is always called."""

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
                 server_header: bytes | None = b"fastcluster") -> None:
        self.app = app
        self.loop = loop
        self.responder = responder
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="wsgi") if threads else None
        self.root_path = root_path
        self.server = server or ("", 0)
        self.server_header = server_header

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
            status, chunks, keep_alive = self.call_app(call)
            for chunk in chunks:
                self.conn.write_answer(chunk)
            self.conn.answered(status, call.started_at, keep_alive)
            return keep_alive
        self.ready.append(call)
        if not self.running:
            self.running = True
            self.server.loop.call_soon(self.next)
        return call.keep_alive

    def drained(self) -> None:
        pass

    def connection_lost(self) -> None:
        self.ready.clear()

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

    def done(self, call: Call, outcome: tuple[int, list[bytes], bool]) -> None:
        status, chunks, keep_alive = outcome
        if not self.conn.closed:
            for chunk in chunks:
                self.conn.send(chunk)
            self.conn.answered(status, call.started_at, keep_alive)
        if keep_alive:
            self.next()
        else:
            self.running = False

    def call_app(self, call: Call) -> tuple[int, list[bytes], bool]:
        """Run the app; (status, output pieces, keep-alive). Runs in the loop or in a pool thread."""
        environ = call.environ
        head_only = environ["REQUEST_METHOD"] == "HEAD"
        state = {"status": 0, "head": None, "written": []}
        keep_alive = call.keep_alive
        date, server_header = self.server.responder.date, self.server.server_header

        def start_response(status, headers, exc_info=None):
            if exc_info is not None:
                try:
                    if state["head"] is not None and state["sent"]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["head"] is not None:
                raise BadResponse("start_response called twice without exc_info")
            code = status.split(" ", 1)[0]
            if not code.isdigit():
                raise BadResponse(f"invalid status {status!r}")
            state["status"] = int(code)
            state["head"] = checked_headers(headers)
            state["sent"] = False
            return write

        def write(data: bytes) -> None:
            state["written"].append(bytes(data))

        result = None
        try:
            result = self.server.app(environ, start_response)
            body = list(state["written"])
            for piece in result:
                if piece:
                    body.append(bytes(piece))
            if state["head"] is None:
                raise BadResponse("the app did not call start_response")
            lines, length = state["head"]
            status = state["status"]
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
            log.error("the app failed on %s %s: %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"],
                      type(exc).__name__, exc, exc_info=not isinstance(exc, BadResponse))
            return 500, [error_page(500, keep_alive, date, server_header)], keep_alive
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("the app's result failed to close")
