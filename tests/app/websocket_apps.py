"""ASGI WebSocket apps served by tests/app/test_asgi_websocket.py: raw ones for each edge, and a FastAPI-like
Starlette app."""

import asyncio
import contextvars
import json

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def raw(scope, receive, send):
    """Accepts (with the first offered subprotocol and a header), answers the first message with the scope,
    then echoes; `close` makes it close with 4001 and a reason."""
    if scope["type"] != "websocket":
        return await not_found(scope, receive, send)
    assert (await receive())["type"] == "websocket.connect"
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                "headers": [(b"x-accepted", b"yes")]})
    first = True
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            print("disconnected with", message["code"], flush=True)
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            continue
        if first:
            shown = {key: scope[key] for key in ("type", "path", "query_string", "scheme", "subprotocols",
                                                 "http_version")}
            shown["query_string"] = shown["query_string"].decode()
            shown["client"] = list(scope["client"])
            await send({"type": "websocket.send", "text": json.dumps(shown)})
            first = False
        await send({"type": "websocket.send", **{key: message[key] for key in ("text", "bytes")
                                                  if message.get(key) is not None}})


async def not_found(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def deny(scope, receive, send):
    if scope["type"] != "websocket":
        return await not_found(scope, receive, send)
    await receive()
    if scope["path"] == "/custom":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"no entry"})
    else:
        await send({"type": "websocket.close"})


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass


starlette_app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])


async def ends(scope, receive, send):
    """Accepts, then after the first message raises (text "raise") or returns."""
    if scope["type"] != "websocket":
        return await not_found(scope, receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    if message.get("text") == "raise":
        raise RuntimeError("the app broke")


started_in = contextvars.ContextVar("started_in")


async def detours(scope, receive, send):
    """Echoes each text after the detour it names: `sleep` waits on the loop first, `task` echoes the next
    message, received by a task of its own, `timeout` first gives up on a receive() after 50 ms. Each echo
    says whether the app still runs as the task and in the context it started in."""
    if scope["type"] != "websocket":
        return await not_found(scope, receive, send)
    await receive()
    await send({"type": "websocket.accept"})
    task = asyncio.current_task()
    started_in.set(task)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message["text"] == "sleep":
            await asyncio.sleep(0.01)
        elif message["text"] == "task":
            message = await asyncio.create_task(receive())
        elif message["text"] == "timeout":
            try:
                message = await asyncio.wait_for(receive(), 0.05)
            except asyncio.TimeoutError:
                pass
        same = asyncio.current_task() is task and started_in.get(None) is task
        await send({"type": "websocket.send", "text": f"{message['text']} {same}"})
