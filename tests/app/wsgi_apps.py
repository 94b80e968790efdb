"""Raw WSGI apps, one per edge of the adapter, served by the tests in test_wsgi.py."""

import json
import sys
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
