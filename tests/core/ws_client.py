"""A raw WebSocket client for the tests: client frames built by hand (so they can break every rule) and
the server's frames read back off a plain socket."""

from __future__ import annotations

import os
import socket
import struct
import zlib
from collections.abc import Callable

from tests.conftest import http_exchange

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's own example

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 1, 2, 8, 9, 10, 0
RSV1 = 0x40  # permessage-deflate: a compressed message (set on its first frame)
DEFLATED_TEXT, DEFLATED_BINARY = TEXT | RSV1, BINARY | RSV1  # what parse_frames calls a compressed message
TAIL = b"\x00\x00\xff\xff"  # the end of a sync flush, left out of each compressed message


def upgrade_request(path: str = "/ws", *, key: bytes = KEY, version: bytes = b"13",
                    extra: bytes = b"", offer: bytes | None = None) -> bytes:
    """The handshake; offer: a Sec-WebSocket-Extensions value."""
    if offer is not None:
        extra += b"Sec-WebSocket-Extensions: " + offer + b"\r\n"
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: " + version
            + b"\r\n" + extra + b"\r\n")


class PerMessageStream:
    """One side of permessage-deflate: a zlib stream with the agreed window, made anew for each message
    when the agreement says no context takeover."""

    def __init__(self, window_bits: int = 15, no_context_takeover: bool = False) -> None:
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.stream = self.new_stream()

    def new_stream(self):
        raise NotImplementedError

    def for_a_message(self):
        if self.no_context_takeover:
            self.stream = self.new_stream()
        return self.stream


class Deflater(PerMessageStream):
    """A client's permessage-deflate compressor: each message deflated with a sync flush, tail left out."""

    def new_stream(self):
        return zlib.compressobj(wbits=-self.window_bits)

    def __call__(self, payload: bytes) -> bytes:
        stream = self.for_a_message()
        data = stream.compress(payload) + stream.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        return data[:-4]


class Inflater(PerMessageStream):
    """The client's side of the server's compression: a window no larger than the server agreed to use,
    and a fresh stream per message when the server agreed to no context takeover, so a server that
    breaks either fails to inflate here."""

    def new_stream(self):
        return zlib.decompressobj(wbits=-self.window_bits)

    def __call__(self, payload: bytes) -> bytes:
        return self.for_a_message().decompress(payload + TAIL)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True,
          length: int | None = None, wide: int = 0, key: bytes | None = None) -> bytes:
    """A client frame; `length` overrides the length field, `wide` forces the 16 (2) or 64-bit (8) form,
    `key` is the masking key (random by default; four zero bytes leave the payload as it is, quick to make
    for large ones)."""
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
    key = os.urandom(4) if key is None else key
    if key == bytes(4):
        return head + key + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


BYE = close_frame(1000)  # the client's close, and the server's answer to it once normalized()
OK = (CLOSE, 1000)


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


def parse_frames(data: bytes, inflate: Inflater | None = None) -> list[tuple[int, bytes]]:
    """The server's frames, (opcode, payload) each; every one must be final and unmasked. With inflate
    (permessage-deflate agreed), a compressed message is inflated and its opcode has RSV1 set."""
    frames = []
    while data:
        first, second = data[0], data[1]
        assert first & 0x80 and not first & (0x30 if inflate else 0x70), data[:2]
        assert not first & RSV1 or first & 0x0F in (TEXT, BINARY), data[:2]
        assert not second & 0x80, "server frames are not masked"
        size, offset = second & 0x7F, 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, offset = struct.unpack("!Q", data[2:10])[0], 10
        assert len(data) >= offset + size, "a frame cut short"
        payload = data[offset:offset + size]
        frames.append((first & 0x4F, inflate(payload) if first & RSV1 else payload))
        data = data[offset + size:]
    return frames


def read_frames(sock: socket.socket, data: bytes, count: int) -> bytes:
    """data and what more is read until it holds count complete frames of the server's."""
    buffer = bytearray(data)
    at = complete = 0
    while True:
        while complete < count and len(buffer) >= at + 2:
            size, offset = buffer[at + 1] & 0x7F, 2
            if size >= 126:
                offset = 4 if size == 126 else 10
                if len(buffer) < at + offset:
                    break
                size = int.from_bytes(buffer[at + 2:at + offset], "big")
            if len(buffer) < at + offset + size:
                break
            at, complete = at + offset + size, complete + 1
        if complete >= count:
            return bytes(buffer)
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {complete} frames"
        buffer += chunk


def read_until_closed(sock: socket.socket, initial: bytes = b"", timeout: float = 5.0) -> bytes:
    return initial + http_exchange(sock, b"", timeout)


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def normalized(frames: list[tuple[int, bytes]]) -> list[tuple[int, object]]:
    return [(opcode, close_code(payload) if opcode == CLOSE else payload) for opcode, payload in frames]


def run_case(port: int, data: bytes, pieces: list[bytes] | None = None, *, offer: bytes | None = None,
             inflate: Callable[[], Inflater] | None = None) -> list[tuple[int, object]]:
    """Handshake (offering the Sec-WebSocket-Extensions value offer, which must be taken), then data (whole
    in the handshake's own send, or in the given pieces); the frames the server sent until it closed, its
    compressed messages inflated by a new inflate()."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if pieces is None:
            sock.sendall(upgrade_request(offer=offer) + data)
        else:
            sock.sendall(upgrade_request(offer=offer))
            for piece in pieces:
                try:
                    sock.sendall(piece)
                except OSError:
                    break  # the server may close as soon as it has seen the error
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head
        assert (b"\r\nSec-WebSocket-Extensions: permessage-deflate" in head) == (offer is not None), head
        return normalized(parse_frames(read_until_closed(sock, rest), inflate and inflate()))


def check_everywhere(server, data: bytes, expected: list, **handshake) -> None:
    """A conformance case: data sent whole, split at every byte and byte by byte must each get the expected
    frames (run_case's), and the server's workers must all live through it."""
    workers = server.workers()
    assert run_case(server.port, data, **handshake) == expected, "whole"
    for cut in range(1, len(data)):
        split = [data[:cut], data[cut:]]
        assert run_case(server.port, data, split, **handshake) == expected, f"split at {cut}"
    bytewise = [data[i:i + 1] for i in range(len(data))]
    assert run_case(server.port, data, bytewise, **handshake) == expected, "bytewise"
    assert server.workers() == workers  # no worker died on the way
