"""Response heads for apps: checks the headers an app hands us (so no app can split a response), adds Date,
Server and the framing (Content-Length, chunked, Connection: close)."""

from __future__ import annotations

from http import HTTPStatus

TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
FRAMING = (b"connection", b"transfer-encoding", b"date", b"server")
NO_BODY = (204, 304)


class BadResponse(Exception):
    """The app's response cannot be sent as it is; the message names what is wrong (for the log)."""


def status_line(status: int) -> bytes:
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise BadResponse(f"status {status!r} is not a number from 100 to 599")
    return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))


def checked_headers(headers) -> tuple[list[bytes], int | None]:
    """The header lines to send (framing headers dropped: we set those) and the Content-Length, if given."""
    lines = []
    length = None
    for name, value in headers:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        # bytes.translate deletes the valid characters in C: anything left makes the name invalid.
        if not isinstance(name, bytes) or not name or name.translate(None, TOKEN_CHARS):
            raise BadResponse(f"invalid header name {name!r}")
        if not isinstance(value, bytes) or b"\r" in value or b"\n" in value or b"\0" in value:
            raise BadResponse(f"invalid value for header {name.decode('latin-1')}: {value!r}")
        lower = name.lower()
        if lower == b"content-length":
            if not value.strip().isdigit():
                raise BadResponse(f"invalid Content-Length {value!r}")
            if length is not None and int(value) != length:
                raise BadResponse(f"conflicting Content-Length values {length} and {int(value)}")
            length = int(value)
            continue  # written by head(), once
        if lower in FRAMING:
            continue
        lines.append(name + b": " + value + b"\r\n")
    return lines, length


def head(status: int, lines: list[bytes], length: int | None, chunked: bool, keep_alive: bool,
         date: bytes, server: bytes | None) -> bytes:
    parts = [status_line(status)]
    if server:
        parts.append(b"Server: " + server + b"\r\n")
    parts.append(b"Date: " + date + b"\r\n")
    parts.extend(lines)
    if length is not None:
        parts.append(b"Content-Length: %d\r\n" % length)
    elif chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def error_page(status: int, keep_alive: bool, date: bytes, server: bytes | None) -> bytes:
    body = REASONS.get(status, b"Error")
    return head(status, [b"Content-Type: text/plain; charset=utf-8\r\n"], len(body), False, keep_alive, date,
                server) + body
