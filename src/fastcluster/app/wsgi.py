"""The WSGI (PEP 3333) adapter: environ, start_response with exc_info, write(), file_wrapper, close().

The body is read into a spooled file before the app runs (memory up to 1 MiB, then a temporary file), so
a blocking app never waits on the network while it holds the worker. With `--threads N` requests run on
a pool of N threads and the event loop keeps serving other connections; with 0 they run on the loop's
own thread, which is fastest for apps that answer without blocking."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from urllib.parse import unquote_to_bytes

from fastcluster.app.headers import BadHeader
from fastcluster.app.protocol import HttpConnection, Request

log = logging.getLogger("fastcluster.app")

SPOOL_IN_MEMORY = 1 << 20
FILE_BLOCK = 64 * 1024
_INTERNAL_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                   b"content-length: 22\r\nconnection: close\r\n")
_ERROR_BODY = b"Internal Server Error\n"


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks and closes it."""

    def __init__(self, file, block_size: int = FILE_BLOCK) -> None:
        self.file = file
        self.block_size = block_size

    def __iter__(self):
        read = self.file.read
        while block := read(self.block_size):
            yield block

    def close(self) -> None:
        close = getattr(self.file, "close", None)
        if close is not None:
            close()


def build_environ(conn: HttpConnection, request: Request, body) -> dict:
    raw_path, _, query = request.url.partition(b"?")
    server = conn.server
    path = unquote_to_bytes(raw_path).decode("latin-1")
    root = server.root_path
    if root and path.startswith(root):
        path = path[len(root):]
    host, port = conn.sockname or ("", 0)
    environ = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": str(host),
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version,
        "REMOTE_ADDR": conn.client[0] if conn.client else "",
        "REMOTE_PORT": str(conn.client[1]) if conn.client else "",
        "RAW_URI": request.url.decode("latin-1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": server.threads > 0,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }
    for name, value in request.headers:
        text = value.decode("latin-1")
        if name == b"content-type":
            environ["CONTENT_TYPE"] = text
        elif name == b"content-length":
            environ["CONTENT_LENGTH"] = text
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            environ[key] = environ[key] + "," + text if key in environ else text
    return environ


async def run_request(app, conn: HttpConnection, request: Request) -> None:
    body = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY)
    while not request.complete:
        if request.chunks:
            body.write(conn.take_body(request))
        elif conn.lost:
            conn.finish(request, abort=True)
            return
        else:
            await conn.wait_body(request)
    if request.chunks:
        body.write(conn.take_body(request))
    body.seek(0)
    environ = build_environ(conn, request, body)
    server = conn.server
    if server.executor is None:
        outcome = call_app(app, conn, request, environ, conn.write)
    else:
        loop = conn.loop

        def write_from_thread(data: bytes) -> None:
            loop.call_soon_threadsafe(conn.write, data)
            if conn.write_paused:
                asyncio.run_coroutine_threadsafe(conn.drain(), loop).result()

        outcome = await loop.run_in_executor(server.executor, call_app, app, conn, request, environ,
                                             write_from_thread)
    body.close()
    if outcome == "done":
        conn.finish(request)
    else:
        if outcome == "not started" and not conn.lost:
            conn.write(_INTERNAL_ERROR + server.date_header + b"\r\n\r\n" +
                       (b"" if request.head_only else _ERROR_BODY))
        conn.finish(request, abort=True)


def call_app(app, conn: HttpConnection, request: Request, environ: dict, write) -> str:
    """Run the app to the end; "done", or where it failed: "not started" (a 500 can go out) or "started"."""
    pending: list = []  # [status, headers] given to start_response, not yet sent
    sent = False

    def start_response(status: str, headers: list, exc_info=None):
        if exc_info is not None:
            try:
                if sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif pending:
            raise RuntimeError("start_response called twice without exc_info")
        pending[:] = [status, headers]
        return write_body

    def send_head() -> bytes:
        nonlocal sent
        status, headers = pending
        code = int(status.split(" ", 1)[0])
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        head = conn.response_head(request, code, encoded)
        sent = True
        return head

    def write_body(data: bytes) -> None:
        if not pending:
            raise RuntimeError("write() before start_response")
        head = b"" if sent else send_head()
        write(head + conn.frame(request, data, True))

    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    result = None
    try:
        result = app(environ, start_response)
        for data in result:
            if data:
                write_body(data)
        if not pending:
            log.error("WSGI app returned without calling start_response for %s %s", method, path)
            return "not started"
        head = b"" if sent else send_head()
        write(head + conn.frame(request, b"", False))
        return "done"
    except BadHeader as exc:
        log.error("%s %s: %s", method, path, exc)
        return "started" if sent else "not started"
    except Exception:
        log.exception("exception in WSGI app for %s %s", method, path)
        return "started" if sent else "not started"
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("exception closing the WSGI response for %s %s", method, path)
