"""ASGI websocket (spec 2.4) in the workers: handshake, scope, accept and deny, messages both ways, close
codes, a Starlette endpoint and the websockets client library, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.app.client import APPS
from tests.core.ws_client import (
    ACCEPT,
    BINARY,
    CLOSE,
    TEXT,
    close_code,
    close_frame,
    frame,
    parse_frames,
    read_head,
    read_until_closed,
    upgrade_request,
)


def app_server(serve, app: str, *args: str):
    return serve(app, "--app-dir", APPS, *args)


def test_starlette_endpoint_with_the_websockets_client(serve):
    server = app_server(serve, "websocket_apps:starlette_app")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            for text in ("hello", "é" * 70_000, "again"):
                await ws.send(text)
                assert await ws.recv() == f"echo: {text}"
            await (await ws.ping())

    asyncio.run(talk())


def test_scope_subprotocol_headers_and_messages(serve):
    server = app_server(serve, "websocket_apps:raw")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/room?x=1", subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-accepted"] == "yes"
            await ws.send("first")
            scope = json.loads(await ws.recv())
            assert scope == {"type": "websocket", "path": "/room", "query_string": "x=1", "scheme": "ws",
                             "subprotocols": ["chat", "other"], "http_version": "1.1",
                             "client": ["127.0.0.1", scope["client"][1]]}
            assert await ws.recv() == "first"
            await ws.send(b"\x00\xff")
            assert await ws.recv() == b"\x00\xff"
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"
            await ws.send("close")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "asked")

    asyncio.run(talk())
    assert server.stop() == 0


def test_the_app_gets_the_close_code(serve):
    server = app_server(serve, "websocket_apps:raw")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("x")
            await ws.recv()
            await ws.close(3007)

    asyncio.run(talk())
    assert server.stop() == 0
    assert "disconnected with 3007" in server.read_output()


@pytest.mark.parametrize("text, code", [("raise", 1011), ("return", 1000)])
def test_an_app_that_ends_closes_its_websocket(serve, text, code):
    server = app_server(serve, "websocket_apps:ends")
    server.tracebacks_expected = text == "raise"
    with server.connect() as sock:
        sock.settimeout(10)
        sock.sendall(upgrade_request())
        head, rest = read_head(sock)
        sock.sendall(frame(TEXT, text.encode()))
        while not parse_frames_prefix(rest):
            rest += sock.recv(65536)
        sock.sendall(close_frame(code))  # the closing handshake's reply
        frames = parse_frames(read_until_closed(sock, rest))
    assert [(opcode, close_code(payload)) for opcode, payload in frames] == [(CLOSE, code)]
    assert server.workers()


def test_messages_reach_an_app_that_waits_elsewhere_or_receives_in_another_task(serve):
    # An app waiting in receive() is stepped as soon as a message is read; these are the ways it can wait
    # on something else in between.
    server = app_server(serve, "websocket_apps:detours")

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            for text in ("a", "sleep", "b"):
                await ws.send(text)
                assert await ws.recv() == f"{text} True"
            await ws.send("task")
            await ws.send("c")
            assert await ws.recv() == "c True"
            await ws.send("timeout")
            assert await ws.recv() == "timeout True"
            await ws.send("e")
            assert await ws.recv() == "e True"
            for text in [str(n) for n in range(20)] + ["sleep", "d"]:  # sent together
                await ws.send(text)
            assert [await ws.recv() for _ in range(22)] == [f"{n} True" for n in range(20)] + [
                "sleep True", "d True"]

    asyncio.run(talk())
    assert server.stop() == 0


def test_closing_before_accepting_is_a_403(serve_shared):
    server = app_server(serve_shared, "websocket_apps:deny")

    async def talk() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{server.port}/"):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(talk())


def test_denial_response_extension(serve_shared):
    server = app_server(serve_shared, "websocket_apps:deny")
    with server.connect() as sock:
        sock.sendall(upgrade_request("/custom"))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert answer.endswith(b"no entry")


def test_malformed_frames_close_with_1002_and_the_worker_lives(serve):
    server = app_server(serve, "websocket_apps:raw", "--access-log", "-")
    workers = server.workers()
    for bad in (frame(TEXT, b"x", mask=False), frame(TEXT, b"x", rsv=1), frame(5, b"x"),
                frame(TEXT, b"\xff")):
        with server.connect() as sock:
            sock.sendall(upgrade_request())
            head, rest = read_head(sock)
            assert ACCEPT in head
            sock.sendall(bad)
            frames = parse_frames(read_until_closed(sock, rest))
        assert [opcode for opcode, _ in frames] == [CLOSE]
        assert close_code(frames[0][1]) in (1002, 1007)
    assert server.workers() == workers
    assert server.stop() == 0
    assert '"GET /ws HTTP/1.1" 101 ' in server.read_output()


def test_frames_sent_with_the_handshake_wait_for_the_accept(serve_shared):
    server = app_server(serve_shared, "websocket_apps:raw")
    with server.connect() as sock:
        sock.settimeout(10)
        sock.sendall(upgrade_request() + frame(TEXT, b"early") + frame(BINARY, b"2"))
        head, rest = read_head(sock)
        while len(parse_frames_prefix(rest)) < 3:
            rest += sock.recv(65536)
        sock.sendall(close_frame(1000))
        frames = parse_frames(read_until_closed(sock, rest))
    assert [opcode for opcode, _ in frames] == [TEXT, TEXT, BINARY, CLOSE]
    assert frames[1:3] == [(TEXT, b"early"), (BINARY, b"2")]


def test_graceful_stop_closes_app_websockets_with_1001(serve):
    server = app_server(serve, "websocket_apps:raw", "--graceful-timeout", "1")
    with server.connect() as sock:
        sock.settimeout(10)
        sock.sendall(upgrade_request() + frame(TEXT, b"hi"))
        head, rest = read_head(sock)
        while len(parse_frames_prefix(rest)) < 2:
            rest += sock.recv(65536)
        server.signal(15)
        frames = parse_frames(read_until_closed(sock, rest))
    assert close_code(frames[-1][1]) == 1001
    assert server.proc.wait(15) == 0  # the worker drained and exited by itself


@pytest.mark.parametrize("request_bytes, status, header", [
    (upgrade_request(version=b"8"), 426, b"Sec-WebSocket-Version: 13"),
    (upgrade_request(key=b"short"), 400, None),
    (upgrade_request().replace(b"GET", b"POST"), 400, None),
])
def test_bad_handshakes_never_reach_the_app(serve_shared, request_bytes, status, header):
    server = app_server(serve_shared, "websocket_apps:raw")
    with server.connect() as sock:
        sock.sendall(request_bytes)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    if header:
        assert b"\r\n" + header + b"\r\n" in answer


def test_other_upgrades_reach_the_app_as_plain_requests(serve_shared):
    server = app_server(serve_shared, "websocket_apps:raw")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 404 ")


def test_wsgi_apps_answer_an_upgrade_as_a_plain_request(serve):
    server = serve("wsgi_apps:environ_echo", "--app-dir", APPS)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(upgrade_request())
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")


def parse_frames_prefix(data: bytes) -> list:
    """The complete frames at the start of data."""
    frames = []
    while len(data) >= 2:
        size, offset = data[1] & 0x7F, 2
        if size == 126:
            size, offset = int.from_bytes(data[2:4], "big"), 4
        if len(data) < offset + size:
            break
        frames.append(data[:offset + size])
        data = data[offset + size:]
    return frames
