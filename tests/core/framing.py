"""A reference model of HTTP/1.1 request framing (RFC 9112), strict and small, for the differential fuzz test:
where does each request of a byte stream end, and what body does it carry?"""

from __future__ import annotations

import re
from dataclasses import dataclass

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
VERSION = re.compile(rb"HTTP/1\.[01]\Z")
HEX = frozenset(b"0123456789abcdefABCDEF")
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
QUOTED = rb'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*"'
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )  (RFC 9112 §7.1.1)
CHUNK_EXTENSION = re.compile(rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + QUOTED
                             + rb"))?)*\Z")


class Invalid(Exception):
    """The stream is not valid HTTP/1.1 from this request on."""


class Incomplete(Exception):
    """The stream ends inside a request."""


@dataclass
class Request:
    method: bytes
    target: bytes
    body: bytes
    keep_alive: bool


def parse_stream(data: bytes) -> tuple[list[Request], str]:
    """The complete requests at the start of data, and how the stream goes on after them: "end" (nothing
    more), "closed" (a request ended the connection), "incomplete" or "invalid"."""
    requests: list[Request] = []
    position = 0
    while position < len(data):
        try:
            request, position = parse_request(data, position)
        except Invalid:
            return requests, "invalid"
        except Incomplete:
            return requests, "incomplete"
        requests.append(request)
        if not request.keep_alive:
            return requests, "closed"
    return requests, "end"


def line_at(data: bytes, position: int) -> tuple[bytes, int]:
    end = data.find(b"\r\n", position)
    if end < 0:
        raise Incomplete
    return data[position:end], end + 2


def parse_fields(data: bytes, position: int) -> tuple[list[tuple[bytes, bytes]], int]:
    fields = []
    while True:
        line, position = line_at(data, position)
        if not line:
            return fields, position
        name, colon, value = line.partition(b":")
        if not colon or not name or not TCHAR.issuperset(name):
            raise Invalid  # also obs-fold (a line starting with whitespace) and bare CR or LF in a name
        value = value.strip(b" \t")
        if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value):
            raise Invalid
        fields.append((name.lower(), value))


def parse_request(data: bytes, position: int) -> tuple[Request, int]:
    line, position = line_at(data, position)
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not TCHAR.issuperset(parts[0]) or not VERSION.match(parts[2]):
        raise Invalid
    method, target, version = parts
    if not target or any(byte <= 0x20 or byte >= 0x7F for byte in target):
        raise Invalid
    fields, position = parse_fields(data, position)
    values = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    http11 = version == b"HTTP/1.1"
    codings, lengths = values.get(b"transfer-encoding", []), values.get(b"content-length", [])
    hosts = len(values.get(b"host", []))
    if (codings and lengths) or len(codings) > 1 or len(lengths) > 1 or hosts > 1 or (http11 and not hosts):
        raise Invalid
    options = {option.strip(b" \t").lower()
               for value in values.get(b"connection", []) for option in value.split(b",")}
    keep_alive = (b"close" not in options) if http11 else (b"keep-alive" in options)
    if codings:
        if codings[0].lower() != b"chunked" or not http11:
            raise Invalid
        body, position, trailers = parse_chunked(data, position)
        # llhttp lets Connection in the trailer section end the connection too: no framing at stake.
        options |= {option.strip(b" \t").lower()
                    for name, value in trailers if name == b"connection" for option in value.split(b",")}
        keep_alive = (b"close" not in options) if http11 else (b"keep-alive" in options)
    elif lengths:
        if not lengths[0].isdigit():
            raise Invalid
        end = position + int(lengths[0])
        if end > len(data):
            raise Incomplete
        body, position = data[position:end], end
    else:
        body = b""
    return Request(method, target, body, keep_alive), position


def parse_chunked(data: bytes, position: int) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    """The body, where it ends, and its trailer fields."""
    body = []
    while True:
        line, position = line_at(data, position)
        size_end = 0
        while size_end < len(line) and line[size_end] in HEX:
            size_end += 1
        if not size_end or not CHUNK_EXTENSION.match(line[size_end:]):
            raise Invalid
        size = int(line[:size_end], 16)
        if size == 0:
            trailers, position = parse_fields(data, position)
            return b"".join(body), position, trailers
        if position + size + 2 > len(data):
            raise Incomplete
        if data[position + size:position + size + 2] != b"\r\n":
            raise Invalid
        body.append(data[position:position + size])
        position += size + 2
