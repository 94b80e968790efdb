"""Raw ASGI apps, one per edge of the adapter, served by the tests in test_asgi.py."""

import asyncio
import contextvars
import json
import os
from urllib.parse import unquote


async def start(send, status=200, headers=(), length=None):
    headers = list(headers)
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def scope_echo(scope, receive, send):
    """Answers with the scope as JSON, bytes made text."""
    if scope["type"] == "lifespan":
        return await lifespan_state(scope, receive, send)
    shown = {key: value for key, value in scope.items() if key not in ("headers", "state")}
    shown["raw_path"] = scope["raw_path"].decode("latin-1")
    shown["query_string"] = scope["query_string"].decode("latin-1")
    shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    shown["state"] = dict(scope.get("state", {}))
    body = json.dumps(shown).encode()
    await start(send, headers=[(b"content-type", b"application/json")], length=len(body))
    await send({"type": "http.response.body", "body": body})


async def lifespan_state(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print("lifespan shutdown ran", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo_body(scope, receive, send):
    """Reads the body in the messages it arrives in and answers with their sizes and the total."""
    if scope["type"] != "http":
        return
    sizes = []
    total = bytearray()
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        sizes.append(len(message["body"]))
        total += message["body"]
        if not message.get("more_body"):
            break
    body = json.dumps({"messages": len(sizes), "length": len(total)}).encode()
    await start(send, length=len(body))
    await send({"type": "http.response.body", "body": body})


async def stream(scope, receive, send):
    """A chunked response in three parts with pauses; ?length=1 gives a Content-Length instead."""
    if scope["type"] != "http":
        return
    parts = [b"one,", b"two,", b"three"]
    with_length = scope["query_string"] == b"length=1"
    await start(send, length=sum(map(len, parts)) if with_length else None)
    for index, part in enumerate(parts):
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": part, "more_body": index < len(parts) - 1})


async def big(scope, receive, send):
    """8 MiB in 64 KiB sends; records how long the sends took in the file named by the query string, which
    is long only if send waited for a slow client (backpressure) instead of buffering everything."""
    if scope["type"] != "http":
        return
    block = b"x" * 65536
    await start(send, length=len(block) * 128)
    began = asyncio.get_running_loop().time()
    for index in range(128):
        await send({"type": "http.response.body", "body": block, "more_body": index < 127})
    if scope["query_string"]:
        with open(scope["query_string"].decode(), "w") as record:
            record.write(str(asyncio.get_running_loop().time() - began))


async def raises_before(scope, receive, send):
    """Raises before http.response.start; /after-start raises after it, before any body; /ok answers."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/ok":
        await start(send, length=2)
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["path"] == "/after-start":
        await start(send, length=10)
        raise ValueError("boom after start, before the body")
    raise ValueError("boom before start")


async def raises_after(scope, receive, send):
    if scope["type"] != "http":
        return
    await start(send)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ValueError("boom after start")


async def no_response(scope, receive, send):
    return None


async def bad_header(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/":
        await start(send, length=0)
        return await send({"type": "http.response.body"})
    name, value = {"/value": (b"x-split", b"a\r\nset-cookie: evil=1"), "/name": (b"bad name", b"v"),
                   "/nul": (b"x-nul", b"a\x00b")}[scope["path"]]
    await start(send, headers=[(name, value)])
    await send({"type": "http.response.body", "body": b"never"})


async def disconnect(scope, receive, send):
    """Waits for the client to go away and records that it saw http.disconnect."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/wait":
        await start(send, status=204)
        return await send({"type": "http.response.body"})
    message = await receive()
    while message["type"] == "http.request" and message.get("more_body"):
        message = await receive()
    message = await receive()
    with open(scope["query_string"].decode(), "w") as record:
        record.write(message["type"])


async def slow(scope, receive, send):
    """Awaits real asyncio work: a sleep, a task and an executor call, then answers with the path."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(float(scope["query_string"] or b"0"))
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, lambda: scope["path"].encode())
    await start(send, length=len(result))
    await send({"type": "http.response.body", "body": result})


async def startup_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await start(send, length=0)
    await send({"type": "http.response.body"})


class AsgiClass:
    """A class instance with async __call__ is ASGI for --interface auto."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        await start(send, length=5)
        await send({"type": "http.response.body", "body": b"class"})


instance = AsgiClass()


def make_app():
    return scope_echo


async def pathsend(scope, receive, send):
    """/ext: the scope's extensions. /file?PATH: the file at PATH by http.response.pathsend (PATH as given,
    relative or missing too); ?length=N before it adds that Content-Length. /stream?FILE: a long stream."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/ext":
        body = json.dumps(sorted(scope["extensions"])).encode()
        await start(send, length=len(body))
        return await send({"type": "http.response.body", "body": body})
    if scope["path"] == "/stream":  # 20 MiB in 64 KiB parts, counting the parts send() took in FILE
        await start(send)
        for index in range(320):
            await send({"type": "http.response.body", "body": b"y" * 65536, "more_body": True})
            with open(unquote(scope["query_string"].decode()), "w") as progress:
                progress.write(str(index + 1))
        return await send({"type": "http.response.body", "body": b""})
    if scope["path"] != "/file":
        await start(send, length=2)
        return await send({"type": "http.response.body", "body": b"ok"})
    query = unquote(scope["query_string"].decode())
    length = None
    if query.startswith("length="):
        length, _, query = query[7:].partition("&")
    await start(send, headers=[(b"content-type", b"application/octet-stream")], length=length)
    await send({"type": "http.response.pathsend", "path": query})


async def trailers(scope, receive, send):
    """A body in two pieces, then trailers in two messages (more_trailers True, then False).
    ?length: with a Content-Length; ?bad: the second trailer's name is invalid."""
    if scope["type"] != "http":
        return
    query = scope["query_string"]
    headers = [(b"content-type", b"text/plain")]
    if b"length" in query:
        headers.append((b"content-length", b"10"))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": b"hello", "more_body": True})
    await send({"type": "http.response.body", "body": b"world", "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    await send({"type": "http.response.trailers", "headers": [(b"x-first", b"1")], "more_trailers": True})
    name = b"bad name" if b"bad" in query else b"x-checksum"
    await send({"type": "http.response.trailers", "headers": [(name, b"abc")], "more_trailers": False})


async def wrong_length(scope, receive, send):
    """Bodies that do not match their Content-Length (5): /over in one message, /over-split after a first
    piece, /under in one message, /under-split after a first piece; /ok matches."""
    if scope["type"] != "http":
        return
    pieces = {"/over": [b"0123456789"], "/over-split": [b"012", b"3456"], "/under": [b"012"],
              "/under-split": [b"012", b""], "/ok": [b"01234"]}.get(scope["path"], [b"01234"])
    await start(send, length=5)
    for index, piece in enumerate(pieces):
        await send({"type": "http.response.body", "body": piece, "more_body": index < len(pieces) - 1})


async def bodiless(scope, receive, send):
    """/204 and /304 with the Content-Length and body the query string gives (?5 or ?0); else a plain ok."""
    if scope["type"] != "http":
        return
    if scope["path"] not in ("/204", "/304"):
        await start(send, length=2)
        return await send({"type": "http.response.body", "body": b"ok"})
    size = int(scope["query_string"] or b"0")
    await start(send, status=int(scope["path"][1:]), length=size)
    await send({"type": "http.response.body", "body": b"x" * size})


async def endless(scope, receive, send):
    """Streams forever; when it ends (cancelled as the worker stops), appends "ended" to the file its query
    string names."""
    if scope["type"] != "http":
        return
    if not scope["query_string"]:
        await start(send, length=5)
        return await send({"type": "http.response.body", "body": b"ready"})
    await start(send)
    try:
        while True:
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    finally:
        with open(scope["query_string"].decode(), "a") as record:
            record.write("ended")


async def gated_digest(scope, receive, send):
    """Waits for the file its query string names to exist, then reads the body and answers with its length
    and SHA-256."""
    import hashlib
    import os

    if scope["type"] != "http":
        return
    while scope["query_string"] and not os.path.exists(scope["query_string"].decode()):
        await asyncio.sleep(0.01)
    digest, length, more = hashlib.sha256(), 0, True
    while more:
        message = await receive()
        digest.update(message.get("body", b""))
        length += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
    await start(send, length=len(body))
    await send({"type": "http.response.body", "body": body})


REQUEST_ID = contextvars.ContextVar("request_id", default="unset")
FINISHED_AFTER_RESPONSE = []


async def tasks(scope, receive, send):
    """Where each request's app runs: /context sets a context variable and answers what it saw before (a
    fresh context each request: always unset); /current answers whether it has a current task, before and
    after it waits; /after answers at once, then works on for 0.3 s; /timeout waits past an
    asyncio.wait_for timeout; /cancelled is cancelled by another task while it waits; /cancel-later answers,
    and its task is cancelled after it has ended."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/context":
        seen = REQUEST_ID.get()
        REQUEST_ID.set(scope["query_string"].decode())
        await asyncio.sleep(0)
        answer = f"{seen} {REQUEST_ID.get()}"
    elif path == "/current":
        before = asyncio.current_task()
        await asyncio.sleep(0.01)
        after = asyncio.current_task()
        answer = f"{before is not None} {before is after} {before in asyncio.all_tasks()}"
    elif path == "/after":
        await start(send, length=5)
        await send({"type": "http.response.body", "body": b"early"})
        await asyncio.sleep(0.3)
        FINISHED_AFTER_RESPONSE.append(scope["query_string"])
        return
    elif path == "/timeout":
        try:
            await asyncio.wait_for(asyncio.sleep(5), 0.02)
            answer = "no timeout"
        except asyncio.TimeoutError:
            answer = "timed out"
    elif path == "/cancel-later":
        asyncio.get_running_loop().call_later(0.05, asyncio.current_task().cancel)
        answer = "scheduled"
    elif path == "/cancelled":
        task = asyncio.current_task()
        asyncio.get_running_loop().call_later(0.02, task.cancel)
        try:
            await asyncio.sleep(5)
            answer = "not cancelled"
        except asyncio.CancelledError:
            answer = "cancelled"
    else:
        answer = str(len(FINISHED_AFTER_RESPONSE))
    body = answer.encode()
    await start(send, length=len(body))
    await send({"type": "http.response.body", "body": body})


async def scope_meddler(scope, receive, send):
    """Answers with the scope's asgi and extensions as it found them, then changes both, as a middleware
    might: the next request must not see the change."""
    if scope["type"] != "http":
        return
    body = json.dumps({"asgi": scope["asgi"], "extensions": scope["extensions"]}).encode()
    scope["asgi"]["version"] = "changed"
    scope["extensions"]["http.response.pathsend"]["changed"] = True
    scope["extensions"]["changed"] = {}
    await start(send, headers=[(b"content-type", b"application/json")], length=len(body))
    await send({"type": "http.response.body", "body": body})


async def path_encoder(scope, receive, send):
    """Answers with its path encoded as UTF-8, as apps do (a lone surrogate in it would raise)."""
    if scope["type"] != "http":
        return
    body = scope["path"].encode()
    await start(send, length=len(body))
    await send({"type": "http.response.body", "body": body})


async def gated(scope, receive, send):
    """/wait?GATE: notes its start (a line in GATE.log), sleeps until the file GATE exists, then answers
    "done"; any other path answers "ok" at once."""
    if scope["type"] != "http":
        return
    body = b"ok"
    if scope["path"] == "/wait":
        gate = scope["query_string"].decode()
        with open(gate + ".log", "a") as record:
            record.write("in\n")
        while not os.path.exists(gate):
            await asyncio.sleep(0.01)
        body = b"done"
    await start(send, length=len(body))
    await send({"type": "http.response.body", "body": body})


async def declared_length(scope, receive, send):
    """Declares Content-Length 5 and, as frameworks do, sends the body only when the method is not HEAD;
    /1xx?CODE answers with that informational status instead (an app error: it cannot be the answer)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/1xx":
        await start(send, status=int(scope["query_string"]), length=0)
        return await send({"type": "http.response.body", "body": b""})
    await start(send, length=5)
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else b"hello"})
