"""permessage-deflate (RFC 7692) for ASGI apps: the app's messages are compressed and the client's
inflated without the app knowing, the websockets client library with compression on and off, a
decompression bomb closing with 1009 (the app told so), and --no-ws-per-message-deflate."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from websockets.asyncio.client import connect

from tests.app.client import APPS
from tests.core.ws_client import (
    BINARY,
    CLOSE,
    DEFLATED_BINARY,
    DEFLATED_TEXT,
    TEXT,
    Deflater,
    Inflater,
    close_code,
    close_frame,
    frame,
    parse_frames,
    read_frames,
    read_head,
    read_until_closed,
    upgrade_request,
)

OFFER = b"permessage-deflate; client_max_window_bits"
ANSWER = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


def app_server(serve, *args: str):
    return serve("websocket_apps:raw", "--app-dir", APPS, *args)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_the_websockets_client_library(serve_shared, compression):
    server = app_server(serve_shared)

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/", max_size=None, compression=compression) as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") == (ANSWER if compression else None)
            assert ws.response.headers["x-accepted"] == "yes"  # the app's own headers stay
            await ws.send("first")
            await ws.recv()  # the scope
            assert await ws.recv() == "first"
            for message in ("é" * 70_000, b"\x00" * 3_000_000, b"x" * 1024):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag" * 500, "ment" * 500, "ed"])
            assert await ws.recv() == "frag" * 500 + "ment" * 500 + "ed"

    asyncio.run(talk())


def test_the_app_sees_messages_inflated_and_sends_compressed_ones(serve_shared):
    server = app_server(serve_shared)
    compress = Deflater(12)
    text = "compressed for the app " * 100
    with server.connect(timeout=10) as sock:
        sock.sendall(upgrade_request(offer=OFFER) + frame(TEXT, compress(b"first"), rsv=4)
                     + frame(TEXT, compress(text.encode()), rsv=4)
                     + frame(BINARY, compress(bytes(5000)), fin=False, rsv=4) + frame(0, b""))
        head, rest = read_head(sock)
        assert f"\r\nSec-WebSocket-Extensions: {ANSWER}\r\n".encode() in head
        rest = read_frames(sock, rest, 4)
        sock.sendall(close_frame(1000))
        frames = parse_frames(read_until_closed(sock, rest, timeout=10), Inflater(12))
    assert [opcode for opcode, _ in frames] == [TEXT, TEXT, DEFLATED_TEXT, DEFLATED_BINARY, CLOSE]
    assert frames[1:4] == [(TEXT, b"first"), (DEFLATED_TEXT, text.encode()), (DEFLATED_BINARY, bytes(5000))]


def test_a_decompression_bomb_closes_with_1009_and_the_app_is_told(serve):
    server = app_server(serve, "--ws-max-size", "64k")
    stream = zlib.compressobj(wbits=-15)
    bomb = stream.compress(bytes(64 << 20)) + stream.flush(zlib.Z_SYNC_FLUSH)
    with server.connect(timeout=10) as sock:
        sock.sendall(upgrade_request(offer=OFFER) + frame(BINARY, bomb[:-4], rsv=4))
        head, rest = read_head(sock)
        frames = parse_frames(read_until_closed(sock, rest, timeout=10), Inflater(12))
    assert [(opcode, close_code(payload)) for opcode, payload in frames] == [(CLOSE, 1009)]
    assert server.stop() == 0
    assert "disconnected with 1009" in server.read_output()


def test_without_per_message_deflate_the_app_gets_no_compression(serve):
    server = app_server(serve, "--no-ws-per-message-deflate")
    with server.connect(timeout=10) as sock:
        sock.sendall(upgrade_request(offer=b"permessage-deflate x") + frame(TEXT, b"x" * 2000))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ") and b"Sec-WebSocket-Extensions" not in head
        rest = read_frames(sock, rest, 2)
        sock.sendall(close_frame(1000))
        frames = parse_frames(read_until_closed(sock, rest, timeout=10))
    assert [opcode for opcode, _ in frames] == [TEXT, TEXT, CLOSE]
    assert frames[1] == (TEXT, b"x" * 2000)


def test_an_extensions_header_that_does_not_parse_never_reaches_the_app(serve):
    server = app_server(serve, "--access-log", "-")
    with server.connect() as sock:
        sock.sendall(upgrade_request(offer=b"permessage-deflate; =1"))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert server.stop() == 0
    assert "disconnected" not in server.read_output()


def test_the_inflater_honours_each_offer(serve_shared):
    """Messages compressed with the window and context the client offered arrive whole at the app."""
    server = app_server(serve_shared)
    for offer, bits, resets in ((b"permessage-deflate; client_no_context_takeover", 15, True),
                                (b"permessage-deflate; client_max_window_bits=9", 9, False)):
        compress = Deflater(bits, resets)
        texts = [b"again and again " * 80] * 3
        with server.connect(timeout=10) as sock:
            sock.sendall(upgrade_request(offer=offer) + frame(TEXT, compress(b"first"), rsv=4)
                         + b"".join(frame(TEXT, compress(text), rsv=4) for text in texts))
            head, rest = read_head(sock)
            rest = read_frames(sock, rest, 5)
            sock.sendall(close_frame(1000))
            frames = parse_frames(read_until_closed(sock, rest, timeout=10), Inflater(12))
        assert frames[2:] == [(DEFLATED_TEXT, text) for text in texts] + [(CLOSE, frames[-1][1])]
