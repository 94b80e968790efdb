"""Raw WSGI apps, one per edge of the adapter, served by test_wsgi_edges.py and test_wsgi_input.py."""

import contextvars
import io
import json
import os
import sys
import threading
import time


def environ_echo(environ, start_response):
    shown = {key: value for key, value in environ.items() if isinstance(value, (str, int, bool, tuple))}
    shown["input"] = environ["wsgi.input"].read().decode("latin-1")
    shown["has_errors"] = environ["wsgi.errors"] is sys.stderr
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def chunked_iterable(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"one,", b"", b"two,", b"three"])


class ClosingBody:
    """An iterable whose close() records that it ran, even when iteration fails."""

    def __init__(self, path: str, fail: bool) -> None:
        self.path = path
        self.fail = fail

    def __iter__(self):
        yield b"first"
        if self.fail:
            raise RuntimeError("boom in the middle")
        yield b"second"

    def close(self) -> None:
        with open(self.path, "w") as record:
            record.write("closed")


def closing(environ, start_response):
    start_response("200 OK", [])
    query = environ["QUERY_STRING"]
    return ClosingBody(query.split("&")[0], fail="fail" in query) if query else [b""]


def write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Length", "11")])
    write(b"hello ")
    return [b"world"]


def exc_info_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Length", "4")], sys.exc_info())
    return [b"busy"]


def raises(environ, start_response):
    if environ["PATH_INFO"] == "/":
        start_response("204 No Content", [])
        return []
    raise ValueError("boom before start")


def bad_header(environ, start_response):
    if environ["PATH_INFO"] == "/":
        start_response("204 No Content", [])
        return []
    start_response("200 OK", [("X-Split", "a\r\nSet-Cookie: evil=1")])
    return [b"never"]


def file_wrapper(environ, start_response):
    handle = open(__file__, "rb")
    start_response("200 OK", [("Content-Type", "text/x-python")])
    return environ["wsgi.file_wrapper"](handle, 4096)


def sleepy(environ, start_response):
    time.sleep(float(environ["QUERY_STRING"] or 0))
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def read_input(environ, start_response):
    """Reads wsgi.input the way the path says and answers with the pieces it got, as JSON (latin-1 text):
    /readline, /readline4 (readline(4)), /readlines, /readlines-hint (readlines(5)), /iter, /read3
    (read(3) until empty), /read, /read-none (read(None)). With a query string FILE, each piece is also
    appended to FILE as soon as the app has it (so a test sees the app read while the body still arrives)."""
    stream = environ["wsgi.input"]
    mode = environ["PATH_INFO"]
    record = environ["QUERY_STRING"]

    def pieces():
        if mode == "/readlines":
            yield from stream.readlines()
        elif mode == "/readlines-hint":
            yield from stream.readlines(5)
        elif mode == "/iter":
            yield from stream
        elif mode == "/read":
            yield stream.read()
        elif mode == "/read-none":
            yield stream.read(None)
        else:
            read = {"/readline": stream.readline, "/readline4": lambda: stream.readline(4),
                    "/read3": lambda: stream.read(3)}.get(mode, stream.read)
            while piece := read():
                yield piece

    got = []
    for piece in pieces():
        got.append(piece.decode("latin-1"))
        if record:
            with open(record, "a") as handle:
                handle.write(piece.decode("latin-1"))
    body = json.dumps(got).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def digest_input(environ, start_response):
    """Reads the body in 64 KiB blocks: /digest answers its length, SHA-256 and the input's type, /echo
    answers with the body itself. A query string FILE: the app waits for FILE to exist before reading."""
    import hashlib

    while environ["QUERY_STRING"] and not os.path.exists(environ["QUERY_STRING"]):
        time.sleep(0.01)
    stream, blocks = environ["wsgi.input"], []
    while block := stream.read(65536):
        blocks.append(block)
    body = b"".join(blocks)
    if environ["PATH_INFO"] != "/echo":
        body = json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                           "type": type(stream).__name__}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class RecordsClose:
    """A file object whose close() writes "closed" to the file named by its `marker`."""

    marker: str

    def close(self) -> None:
        if not self.closed:
            with open(self.marker, "a") as record:
                record.write("closed")
        super().close()


class RecordingFile(RecordsClose, io.FileIO):
    def __init__(self, path: str, marker: str) -> None:
        super().__init__(path, "r")
        self.marker = marker


class RecordingBytes(RecordsClose, io.BytesIO):
    def __init__(self, data: bytes, marker: str) -> None:
        super().__init__(data)
        self.marker = marker


def wrapped_file(environ, start_response):
    """wsgi.file_wrapper over /file?path=P (from offset=N, with length=N as Content-Length) or over
    /bytes (a BytesIO of 1000 "memory!" strings); both record their close() in marker=M."""
    from urllib.parse import parse_qs

    query = {key: values[0] for key, values in parse_qs(environ["QUERY_STRING"]).items()}
    if "marker" not in query:
        start_response("200 OK", [])
        return [b"ready"]
    headers = [("Content-Length", query["length"])] if "length" in query else []
    if environ["PATH_INFO"] == "/file":
        handle = RecordingFile(query["path"], query["marker"])
        handle.seek(int(query.get("offset", 0)))
    else:
        handle = RecordingBytes(b"memory!" * 1000, query["marker"])
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](handle, 4096)


class Endless:
    """A response that never ends; its close() appends "closed" to the file its query string names."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return b"x" * 65536

    def close(self) -> None:
        with open(self.marker, "a") as record:
            record.write("closed")


def endless(environ, start_response):
    """/?FILE: an Endless response. /sleep?S: answers after S seconds."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
        return [b"slept"]
    return Endless(environ["QUERY_STRING"]) if environ["QUERY_STRING"] else [b"ready"]


def status_echo(environ, start_response):
    """Answers with the status its (percent-decoded) query string gives, "200 OK" when none."""
    from urllib.parse import unquote

    start_response(unquote(environ["QUERY_STRING"]) or "200 OK", [("Content-Length", "2")])
    return [b"ok"]


def wrong_length(environ, start_response):
    """A body not matching its Content-Length: /over or /under (5) in a list, answered whole;
    /over-stream or /under-stream (100000, more than is gathered) from a generator, streamed; else a match."""
    path = environ["PATH_INFO"]
    if path.endswith("-stream"):
        start_response("200 OK", [("Content-Length", "100000")])
        pieces = [b"x" * 70000, b"y" * 40000] if path == "/over-stream" else [b"x" * 70000]
        return (piece for piece in pieces)
    start_response("200 OK", [("Content-Length", "5")])
    return {"/over": [b"0123456789"], "/under": [b"012"]}.get(path, [b"01234"])


def record_read(environ, start_response):
    """Reads the whole body and records in the file its query string names what it got: "read N", or
    "cut short" when reading raised (then the error goes on to the server)."""
    try:
        body = environ["wsgi.input"].read()
    except OSError:
        with open(environ["QUERY_STRING"], "w") as record:
            record.write("cut short")
        raise
    if environ["QUERY_STRING"]:
        with open(environ["QUERY_STRING"], "w") as record:
            record.write(f"read {len(body)}")
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


def bytes_not_iterable(environ, start_response):
    """Returns bytes (iterating them gives ints), or with ?text, str pieces: both app errors."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["QUERY_STRING"] == "text":
        return iter(["text, not bytes"])
    if environ["QUERY_STRING"] == "list":
        return [b"fine", "then text"]
    return b"hello" if environ["PATH_INFO"] == "/bytes" else [b"ready"]


def declared_length(environ, start_response):
    """Declares a Content-Length and, as werkzeug does, sends no body to HEAD or with a 304: / (5 bytes, a
    list), /big (100000 bytes from a generator: streamed), /304 (Not Modified)."""
    path = environ["PATH_INFO"]
    bodiless = environ["REQUEST_METHOD"] == "HEAD" or path == "/304"
    if path == "/big":
        start_response("200 OK", [("Content-Length", "100000")])
        return (piece for piece in ([] if bodiless else [b"x" * 100000]))
    status = "304 Not Modified" if path == "/304" else "200 OK"
    start_response(status, [("Content-Length", "5"), ("ETag", '"1"')])
    return [] if bodiless else [b"hello"]


REQUEST = contextvars.ContextVar("request", default=None)


class ThreadBound:
    """A response that never ends and appends to the file `marker` the thread of each piece it gives, and of
    its close() with whether close() sees the context variable its request set (as Flask's teardown needs)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        with open(self.marker, "a") as record:
            record.write(f"piece {threading.get_ident()}\n")
        return b"x" * 65536

    def close(self) -> None:
        with open(self.marker, "a") as record:
            record.write(f"close {threading.get_ident()} {REQUEST.get() == self.marker}\n")


def thread_bound(environ, start_response):
    """/?MARKER: a ThreadBound response; / alone: "ready"."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    if not environ["QUERY_STRING"]:
        return [b"ready"]
    REQUEST.set(environ["QUERY_STRING"])
    return ThreadBound(environ["QUERY_STRING"])
