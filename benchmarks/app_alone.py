"""An app's own cost per call, with no server: the request wrk sends, driven straight into the app in a loop.

    python benchmarks/app_alone.py fastapi_app:app --interface asgi --path '/items/42?q=abc' --duration 5

Prints one JSON object: the process CPU time per call after a warm-up (every thread of the process, so
work an app hands to a thread pool counts), the number of calls, and the first call's status, content type
and body so the caller can check the app answered as it does under a server. ASGI apps are awaited in one
coroutine on an asyncio loop (uvloop's when installed): no task per call, a fresh scope dict each call, and
a receive that, like a server's, answers the empty body and then http.disconnect once the response is
complete. WSGI apps get a fresh environ and input stream each call; their result is iterated and closed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
HOST = "127.0.0.1"
PORT = 8000
CLIENT_PORT = 50000
CHECK_EVERY = 50  # calls between two looks at the clock


@dataclass
class Answer:
    status: int = 0
    content_type: str = ""
    body: bytes = b""


@dataclass
class Cost:
    us_per_call: float
    calls: int
    status: int
    content_type: str
    body: str


Measured = tuple[Answer, float, int]  # the first call's answer, CPU seconds used by the timed calls, calls


def load(spec: str, app_dir: Path) -> Callable:
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, str(app_dir))
    return getattr(importlib.import_module(module_name), attribute or "app")


class AsgiExchange:
    """receive and send for one request at a time; reset() starts the next one."""

    REQUEST = {"type": "http.request", "body": b"", "more_body": False}
    DISCONNECT = {"type": "http.disconnect"}

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer  # None: discard what the app sends
        self.reset()

    def reset(self) -> None:
        self.body_given = False
        self.complete = False
        self.waiter: asyncio.Future | None = None

    async def receive(self) -> dict:
        if not self.body_given:
            self.body_given = True
            return self.REQUEST
        if not self.complete:  # as a server does: nothing more until the response is complete
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.DISCONNECT

    async def send(self, message: dict) -> None:
        if self.answer is not None:
            record(self.answer, message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)


def record(answer: Answer, message: dict) -> None:
    if message["type"] == "http.response.start":
        answer.status = message["status"]
        headers = {name.lower(): value for name, value in message.get("headers", [])}
        answer.content_type = headers.get(b"content-type", b"").decode("latin-1")
    elif message["type"] == "http.response.body":
        answer.body += message.get("body", b"")


def asgi_scope(path: str, query: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", f"{HOST}:{PORT}".encode())],
        "client": (HOST, CLIENT_PORT),
        "server": (HOST, PORT),
        "state": {},
    }


def run_asgi(app: Callable, path: str, query: str, warmup: float, duration: float) -> Measured:
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    scope = asgi_scope(path, query)

    async def first() -> Answer:
        exchange = AsgiExchange(Answer())
        await app(dict(scope, state={}), exchange.receive, exchange.send)
        return exchange.answer

    async def repeat(seconds: float) -> tuple[float, int]:
        exchange = AsgiExchange()
        receive, send, reset = exchange.receive, exchange.send, exchange.reset
        calls, started, deadline = 0, time.process_time(), time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(CHECK_EVERY):
                reset()
                await app(dict(scope, state={}), receive, send)
            calls += CHECK_EVERY
        return time.process_time() - started, calls

    try:
        answer = loop.run_until_complete(first())
        loop.run_until_complete(repeat(warmup))
        used, calls = loop.run_until_complete(repeat(duration))
    finally:
        loop.close()
    return answer, used, calls


def wsgi_environ(path: str, query: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": HOST,
        "SERVER_PORT": str(PORT),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": HOST,
        "REMOTE_PORT": str(CLIENT_PORT),
        "HTTP_HOST": f"{HOST}:{PORT}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def run_wsgi(app: Callable, path: str, query: str, warmup: float, duration: float) -> Measured:
    environ = wsgi_environ(path, query)
    answer = Answer()

    def write(data: bytes) -> None:
        answer.body += data

    def start_response(status: str, headers: list, exc_info=None) -> Callable:
        answer.status = int(status.split(None, 1)[0])
        found = {name.lower(): value for name, value in headers}
        answer.content_type = found.get("content-type", "")
        return write

    result = app(dict(environ, **{"wsgi.input": io.BytesIO()}), start_response)
    try:
        for chunk in result:
            answer.body += chunk
    finally:
        if hasattr(result, "close"):
            result.close()

    def ignore(data: bytes) -> None:
        pass

    def discard(status: str, headers: list, exc_info=None) -> Callable:
        return ignore

    def repeat(seconds: float) -> tuple[float, int]:
        calls, started, deadline = 0, time.process_time(), time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(CHECK_EVERY):
                result = app(dict(environ, **{"wsgi.input": io.BytesIO()}), discard)
                for _chunk in result:
                    pass
                if hasattr(result, "close"):
                    result.close()
            calls += CHECK_EVERY
        return time.process_time() - started, calls

    repeat(warmup)
    used, calls = repeat(duration)
    return answer, used, calls


def measure(spec: str, interface: str, target: str, duration: float, warmup: float = 1.0,
            app_dir: Path = APPS) -> Cost:
    """The app's CPU time per call for GET target, after warmup seconds of the same calls."""
    app = load(spec, app_dir)
    path, _, query = target.partition("?")
    run = run_asgi if interface == "asgi" else run_wsgi
    answer, used, calls = run(app, path, query, warmup, duration)
    return Cost(round(used * 1e6 / calls, 3), calls, answer.status, answer.content_type,
                answer.body.decode(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="module:attribute")
    parser.add_argument("--interface", choices=("asgi", "wsgi"), required=True)
    parser.add_argument("--path", default="/", help="path and query string, e.g. /items/42?q=abc")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of calls first (default 1)")
    parser.add_argument("--app-dir", type=Path, default=APPS, help="where APP is imported from")
    args = parser.parse_args(argv)
    cost = measure(args.app, args.interface, args.path, args.duration, args.warmup, args.app_dir)
    print(json.dumps(asdict(cost)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
