"""A raw WebSocket client for the tests: client frames built by hand (so they can break every rule) and
the server's frames read back off a plain socket."""

from __future__ import annotations

import os
import socket
import struct

from tests.conftest import http_exchange

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's own example

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 1, 2, 8, 9, 10, 0


def upgrade_request(path: str = "/ws", *, key: bytes = KEY, version: bytes = b"13",
                    extra: bytes = b"") -> bytes:
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: " + version
            + b"\r\n" + extra + b"\r\n")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
          length: int | None = None, wide: int = 0) -> bytes:
    """A client frame; `length` overrides the length field, `wide` forces the 16 (2) or 64-bit (8) form."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if wide == 8 or size > 0xFFFF:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    elif wide == 2 or size > 125:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | size])
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(the HTTP head, the bytes read after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames, (opcode, payload) each; every one must be final and unmasked."""
    frames = []
    while data:
        first, second = data[0], data[1]
        assert first & 0x80 and not first & 0x70, data[:2]
        assert not second & 0x80, "server frames are not masked"
        size, offset = second & 0x7F, 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        assert len(data) >= offset + size, "a frame cut short"
        frames.append((first & 0x0F, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


def read_until_closed(sock: socket.socket, initial: bytes = b"", timeout: float = 5.0) -> bytes:
    return initial + http_exchange(sock, b"", timeout)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
