"""Backpressure both ways for ASGI WebSockets, over real sockets: an app's `await send()` waits while its
client does not read (the worker holds at most its output limit) and goes on when it reads; an app that
does not receive() stops the socket being read (the client's sends block once the kernel's buffers are
full) and gets every message, in order, once it receives."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from functools import partial

from tests.app.client import APPS
from tests.conftest import wait_until
from tests.core.ws_client import (
    BINARY,
    TEXT,
    close_frame,
    frame,
    parse_frames,
    read_frames,
    read_head,
    read_until_closed,
    upgrade_request,
)

PIECE = 65536


def test_send_waits_while_the_client_does_not_read_and_resumes_when_it_does(serve, tmp_path):
    server = serve("websocket_flow_apps:flood", "--app-dir", APPS)
    progress = tmp_path / "progress"
    count = 256  # 16 MiB
    with server.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PIECE)
        sock.sendall(upgrade_request(f"/?count={count}&progress={progress}"))
        time.sleep(0.5)  # read nothing meanwhile
        stalled = int(progress.read_text()) if progress.exists() else 0
        assert stalled < count // 2, "send() went on while the client was not reading"
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        frames = parse_frames(read_frames(sock, rest, count))
        assert frames == [(BINARY, bytes([number % 256]) * PIECE) for number in range(count)]
        assert wait_until(lambda: progress.read_text() == str(count))
        sock.sendall(close_frame(1000))
        read_until_closed(sock)


def test_an_app_that_does_not_receive_stops_the_socket_being_read(serve, tmp_path):
    server = serve("websocket_flow_apps:gated", "--app-dir", APPS)
    gate = tmp_path / "gate"
    block = os.urandom(PIECE)
    payloads = [number.to_bytes(4, "big") + block[4:] for number in range(256)]  # 16 MiB
    stream = b"".join(frame(BINARY, payload, key=bytes(4)) for payload in payloads)
    with server.connect(timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIECE)
        sock.sendall(upgrade_request(f"/?gate={gate}"))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.settimeout(0.5)
        sent = 0
        try:
            while sent < len(stream):
                sent += sock.send(stream[sent:sent + (1 << 20)])
        except TimeoutError:
            pass
        assert sent < len(stream) * 3 // 8, f"the worker read {sent} bytes its app was not receiving"
        gate.touch()
        sock.settimeout(10)
        sock.sendall(stream[sent:] + frame(TEXT, b"end"))
        [(opcode, answer)] = parse_frames(read_frames(sock, rest, 1))
        sock.sendall(close_frame(1000))
        read_until_closed(sock)
    assert json.loads(answer) == {"count": len(payloads), "length": len(payloads) * PIECE,
                                  "sha256": hashlib.sha256(b"".join(payloads)).hexdigest()}


def test_a_websocket_held_for_its_app_is_not_closed_by_the_keepalive(serve, tmp_path):
    """While reading waits for the app, the peer's pongs could not be read: no keep-alive ping is sent."""
    server = serve("websocket_flow_apps:gated", "--app-dir", APPS, "--ws-ping-interval", "1",
                   "--ws-ping-timeout", "1")
    gate = tmp_path / "gate"
    payloads = [bytes([number]) * 1000 for number in range(40)]  # more than the app's queue holds
    with server.connect(timeout=10) as sock:
        sock.sendall(upgrade_request(f"/?gate={gate}") + b"".join(map(partial(frame, BINARY), payloads)))
        head, rest = read_head(sock)
        time.sleep(3.5)  # past a ping interval and its timeout
        gate.touch()
        sock.sendall(frame(TEXT, b"end"))
        [(opcode, answer)] = parse_frames(read_frames(sock, rest, 1))
        sock.sendall(close_frame(1000))
        read_until_closed(sock)
    assert (opcode, json.loads(answer)["count"]) == (TEXT, len(payloads))
