"""ASGI WebSocket apps for tests/app/test_asgi_websocket_backpressure.py: one that sends faster than its
client reads, one that does not receive until told to. They take their files (progress, gate) from the
query string, so the test sees how far the app got while the client holds back."""

import asyncio
import hashlib
import json
import os
from urllib.parse import parse_qs


def query(scope) -> dict:
    return {name: values[0] for name, values in parse_qs(scope["query_string"].decode()).items()}


async def flood(scope, receive, send):
    """Sends `count` binary messages of 64 KiB (message i filled with byte i % 256), writing into `progress`
    how many sends have completed."""
    options = query(scope)
    await receive()
    await send({"type": "websocket.accept"})
    for number in range(int(options["count"])):
        await send({"type": "websocket.send", "bytes": bytes([number % 256]) * 65536})
        with open(options["progress"], "w") as progress:
            progress.write(str(number + 1))
    message = await receive()
    assert message["type"] == "websocket.disconnect", message


async def gated(scope, receive, send):
    """Receives nothing until the file `gate` exists; then takes every message up to the text "end" and
    answers with their count, total length and SHA-256."""
    options = query(scope)
    await receive()
    await send({"type": "websocket.accept"})
    while not os.path.exists(options["gate"]):
        await asyncio.sleep(0.02)
    count, length, digest = 0, 0, hashlib.sha256()
    while True:
        message = await receive()
        if message.get("text") == "end":
            break
        count += 1
        length += len(message["bytes"])
        digest.update(message["bytes"])
    await send({"type": "websocket.send", "text": json.dumps({"count": count, "length": length,
                                                              "sha256": digest.hexdigest()})})
    await receive()
