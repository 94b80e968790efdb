"""Raw ASGI and WSGI apps the tests run (imported by the server's workers through --app-dir)."""

import asyncio
import os

CLOSED_MARKER = os.environ.get("FASTCLUSTER_TEST_MARKER", "")


async def echo_scope(scope, receive, send):
    """Answers with the scope's interesting fields and the request body's length."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body_length = 0  # counted, not gathered: joining a 20 MB body piece by piece takes seconds
    while True:
        message = await receive()
        body_length += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    fields = {key: scope[key] for key in ("http_version", "method", "scheme", "path", "root_path")}
    fields.update(raw_path=scope["raw_path"].decode(), query_string=scope["query_string"].decode(),
                  headers=[[k.decode(), v.decode()] for k, v in scope["headers"]],
                  client=list(scope["client"]) if scope["client"] else None, server=list(scope["server"]),
                  state=dict(scope["state"]), body_length=body_length, asgi=scope["asgi"])
    import json

    payload = json.dumps(fields).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def loop_name(scope, receive, send):
    """Answers with the top module of the running loop's class: uvloop or asyncio."""
    if scope["type"] == "lifespan":
        return await echo_scope(scope, receive, send)
    name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": name.encode()})


async def stream(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for index in range(5):
        await send({"type": "http.response.body", "body": b"part %d\n" % index, "more_body": True})
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b""})


async def slow(scope, receive, send):
    await asyncio.sleep(float(scope["query_string"] or b"0.3"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def broken(scope, receive, send):
    if scope["path"] == "/raise":
        raise RuntimeError("boom before the response")
    if scope["path"] == "/silent":
        return
    if scope["path"] == "/bad-header":
        evil = [(b"x-evil", b"a\r\nSet-Cookie: x")]
        await send({"type": "http.response.start", "status": 200, "headers": evil})
        return
    if scope["path"] == "/late":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after the response started")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"fine"})


async def failing_startup(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return


def make_app():
    return echo_scope


class AsgiCallable:
    async def __call__(self, scope, receive, send):
        await stream(scope, receive, send)


instance = AsgiCallable()


def wsgi_echo(environ, start_response):
    body = environ["wsgi.input"].read()
    text = "|".join([environ["REQUEST_METHOD"], environ["SCRIPT_NAME"], environ["PATH_INFO"],
                     environ["QUERY_STRING"], environ.get("CONTENT_TYPE", ""), environ.get("HTTP_X_TEST", ""),
                     environ["SERVER_PROTOCOL"], environ["wsgi.url_scheme"], str(len(body))])
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"[")
    return [text.encode(), b"]"]


class ClosingResult:
    def __init__(self, pieces):
        self.pieces = pieces

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        if CLOSED_MARKER:
            with open(CLOSED_MARKER, "a") as marker:
                marker.write("closed\n")


def wsgi_broken(environ, start_response):
    if environ["PATH_INFO"] == "/raise":
        raise RuntimeError("boom")
    if environ["PATH_INFO"] == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            import sys

            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return ClosingResult([b"sorry"])
    if environ["PATH_INFO"] == "/bad-header":
        start_response("200 OK", [("X-Evil", "a\nb")])
        return [b"x"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingResult([b"ok"])


def wsgi_slow(environ, start_response):
    import time

    time.sleep(float(environ["QUERY_STRING"] or "0.3"))
    start_response("200 OK", [])
    return [environ["PATH_INFO"].encode()]


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, World!"})


async def watch(scope, receive, send):
    """/big?FILE: streams 20 MiB in 64 KiB parts, writing how many parts send() has accepted to FILE after
    each one."""
    if scope["type"] != "http":
        return
    marker = scope["query_string"].decode()
    if not marker:  # the harness's readiness probe
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ready"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    part = b"x" * 65536
    for index in range(320):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        with open(marker, "w") as handle:
            handle.write(str(index + 1))
    await send({"type": "http.response.body", "body": b""})


def wsgi_stream(environ, start_response):
    """/gate?FILE: write() one part, yield a second, then wait for FILE to exist before the third.
    /big?FILE: 20 MiB in 64 KiB parts, writing how many parts were taken to FILE after each one."""
    import time

    marker = environ["QUERY_STRING"]
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    if not marker:  # the harness's readiness probe
        return [b"ready"]

    def gate():
        yield b"second|"
        while not os.path.exists(marker):
            time.sleep(0.01)
        yield b"third"

    def big():
        part = b"x" * 65536
        for index in range(320):
            yield part
            with open(marker, "w") as handle:
                handle.write(str(index + 1))

    if environ["PATH_INFO"] == "/gate":
        write(b"first|")
        return gate()
    return big()


def wsgi_generator(environ, start_response):
    """A generator function: start_response runs only when the server asks for the first piece."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one|"
    yield b"two"


async def ignores_body(scope, receive, send):
    """Answers at once, without reading the request body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_ignores_body(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
