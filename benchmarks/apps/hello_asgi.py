"""The hello-world ASGI app every ASGI server is measured with (BODY_BYTES sets a larger body)."""

import os

BODY = b"x" * int(os.environ["BODY_BYTES"]) if os.environ.get("BODY_BYTES") else b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
