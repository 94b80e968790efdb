"""Checking response headers an app hands us, so no app can split a response or smuggle a header."""

from __future__ import annotations

import re

# RFC 9110 token characters for names; values: any byte but CR, LF and NUL.
_VALID_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


class BadHeader(ValueError):
    """An app gave a header that cannot be sent; the message names it."""


def encode_headers(headers, status_line: bytes) -> tuple[bytes, int | None, bool]:
    """The head of a response as bytes, the Content-Length the app gave (or None), and whether it asked
    for the connection to close."""
    lines = [status_line]
    content_length: int | None = None
    close = False
    for name, value in headers:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise BadHeader(f"header {name!r}: {value!r} is not a pair of bytes")
        if _VALID_NAME.match(name) is None:
            raise BadHeader(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value) is not None:
            raise BadHeader(f"header {name.decode('latin-1')!r} has CR, LF or NUL in its value {value!r}")
        lower = name.lower()
        if lower == b"content-length":
            if not value.strip().isdigit():
                raise BadHeader(f"invalid Content-Length {value!r}")
            content_length = int(value)
        elif lower == b"connection" and b"close" in value.lower():
            close = True
            continue
        elif lower == b"transfer-encoding":
            continue  # framing is ours to decide
        lines.append(name + b": " + value)
    return b"\r\n".join(lines), content_length, close
