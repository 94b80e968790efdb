"""The ASGI app of the soak (benchmarks/soak.py): a hello answer, a streamed one, an echo of the body, and one
that waits before answering."""

import asyncio

HELLO = b"Hello, World!"
TEXT = [(b"content-type", b"text/plain")]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": TEXT})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/sleep":
        await asyncio.sleep(0.005)
    await send({"type": "http.response.start", "status": 200,
                "headers": TEXT + [(b"content-length", str(len(HELLO)).encode())]})
    await send({"type": "http.response.body", "body": HELLO})
