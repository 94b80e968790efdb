# The built-in routes of the responder: which route a URL takes (decided as soon as the URL is known, so the
# plain answers cost nothing more), the response controls read from the query or the X-Fastcluster-Response
# header, and the producers that send large, delayed, streamed and dripped bodies piece by piece.
import json
from urllib.parse import unquote_to_bytes

from libc.string cimport memchr, memcmp

from fastcluster.core.producer cimport body_length

# Body bytes of /bytes and size=: byte k is PATTERN[k % 64], so any slice of a body is easy to check.
PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
DEF BLOCK = 65536
cdef bytes BLOCK_BYTES = PATTERN * (BLOCK // 64)
cdef bytes CHUNKED_BLOCK = b"%x\r\n" % BLOCK + BLOCK_BYTES + b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTROLS = ("status", "size", "delay", "header", "chunked", "close")
MAX_DELAY = 3600.0
TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadControl(ValueError):
    """A response control the request asked for cannot be honoured; the message is the 400 body."""


cdef Py_ssize_t path_start(const char *url, Py_ssize_t length) noexcept:
    """Where the path begins: 0 for origin-form, after scheme://authority for absolute-form."""
    cdef const char *scheme_end
    if length and url[0] == c'/':
        return 0
    scheme_end = <const char *>memchr(url, c':', length)
    if scheme_end == NULL or scheme_end + 3 > url + length or memcmp(scheme_end, b"://", 3) != 0:
        return length
    cdef const char *path = <const char *>memchr(scheme_end + 3, c'/', url + length - scheme_end - 3)
    return length if path == NULL else path - url


cdef inline bint is_path(const char *path, Py_ssize_t length, const char *name, Py_ssize_t name_length) noexcept:
    return length == name_length and memcmp(path, name, length) == 0


cdef inline bint has_prefix(const char *path, Py_ssize_t length, const char *name,
                            Py_ssize_t name_length) noexcept:
    return length > name_length and memcmp(path, name, name_length) == 0


cdef Route route_of(bytes url) noexcept:
    cdef const char *data = url
    cdef Py_ssize_t length = len(url)
    cdef Py_ssize_t start = path_start(data, length)
    cdef const char *path = data + start
    cdef Py_ssize_t path_length = length - start
    if path_length == 1 and path[0] == c'/':
        return ROUTE_FIXED
    if is_path(path, path_length, b"/json", 5):
        return ROUTE_JSON
    cdef const char *end = <const char *>memchr(path, c'?', path_length)
    cdef bint query = end != NULL
    if query:
        path_length = end - path
    end = <const char *>memchr(path, c'#', path_length)
    if end != NULL:
        path_length = end - path
    if is_path(path, path_length, b"/headers", 8):
        return ROUTE_HEADERS
    if is_path(path, path_length, b"/echo", 5):
        return ROUTE_ECHO
    if is_path(path, path_length, b"/ws", 3):
        return ROUTE_WEBSOCKET
    if is_path(path, path_length, b"/drip", 5):
        return ROUTE_SHAPED
    if is_path(path, path_length, b"/json", 5):
        return ROUTE_SHAPED if query else ROUTE_JSON
    if is_path(path, path_length, b"/", 1):
        return ROUTE_SHAPED if query else ROUTE_FIXED
    if (has_prefix(path, path_length, b"/status/", 8) or has_prefix(path, path_length, b"/bytes/", 7)
            or has_prefix(path, path_length, b"/delay/", 7) or has_prefix(path, path_length, b"/stream/", 8)):
        return ROUTE_SHAPED
    return ROUTE_FIXED


cdef long long whole_number(value, str what) except? -2:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadControl(f"{what} must be a whole number, not {value!r}") from None
    if number < 0:
        raise BadControl(f"{what} must not be negative")
    if number > 1 << 50:
        raise BadControl(f"{what} is too large")
    return number


cdef double seconds(value, double unit, str what) except -1:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadControl(f"{what} must be a number, not {value!r}") from None
    if not 0 <= number * unit <= MAX_DELAY:  # also refuses nan
        raise BadControl(f"{what} must be between 0 and {MAX_DELAY:g} s")
    return number * unit


cdef tuple header_pair(value):
    if not isinstance(value, str):
        raise BadControl("header must be Name:Value with a valid name")
    name, colon, text = value.encode("latin-1", "replace").partition(b":")
    name = name.strip()
    text = text.strip()
    if not colon or not name or not TOKEN.issuperset(name):
        raise BadControl("header must be Name:Value with a valid name")
    if any(byte < 32 and byte != 9 or byte == 127 for byte in text):
        raise BadControl("header value must not hold control characters")
    return name, text


cdef int apply(Shape shape, str key, value) except -1:
    if key == "status":
        status = whole_number(value, "status")
        if not 100 <= status <= 599:
            raise BadControl("status must be between 100 and 599")
        shape.status = <int>status
    elif key == "size":
        shape.size = whole_number(value, "size")
    elif key == "delay":
        shape.delay = seconds(value, 0.001, "delay")
    elif key == "header":
        values = value if isinstance(value, list) else [value]
        for item in values:
            shape.headers.append(header_pair(item))
    elif key == "headers" and isinstance(value, dict):
        for name, text in value.items():
            shape.headers.append(header_pair(f"{name}:{text}"))
    elif key == "chunked":
        shape.chunked = flag(value, key)
    elif key == "close":
        shape.close = flag(value, key)
    else:
        raise BadControl(f"unknown control {key!r} (known: {', '.join(CONTROLS)})")
    return 0


cdef bint flag(value, str key) except -1:
    if value in (True, 1, "1", "true", "yes", "on"):
        return True
    if value in (False, 0, "0", "false", "no", "off"):
        return False
    raise BadControl(f"{key} must be 1 or 0")


cdef class Shape:
    """What one request asked the built-in responder for: the route and every control applied to it."""

    def __init__(self):
        self.status = -1
        self.size = -1
        self.headers = []


def shape_of(bytes url, bytes control) -> Shape:
    """The Shape a request asks for by its path, query and X-Fastcluster-Response header; BadControl if not
    possible."""
    cdef Shape shape = Shape()
    start = path_start(url, len(url))
    path, _, query = url[start:].partition(b"#")[0].partition(b"?")
    drip = {}
    if path == b"/":
        shape.kind = KIND_HELLO
    elif path == b"/json":
        shape.kind = KIND_JSON
    elif path == b"/headers":
        shape.kind = KIND_HEADERS
    elif path == b"/echo":
        shape.kind = KIND_ECHO
    elif path == b"/drip":
        shape.kind = KIND_DRIP
        shape.count = 10
        shape.duration = 2.0
    else:
        route, _, argument = path[1:].partition(b"/")
        if route == b"status":
            shape.kind = KIND_STATUS
            apply(shape, "status", argument.decode("latin-1"))
        elif route == b"bytes":
            shape.kind = KIND_BYTES
            shape.size = whole_number(argument.decode("latin-1"), "/bytes length")
        elif route == b"delay":
            shape.kind = KIND_HELLO
            shape.delay = seconds(argument.decode("latin-1"), 0.001, "/delay")
        elif route == b"stream":
            shape.kind = KIND_STREAM
            shape.count = whole_number(argument.decode("latin-1"), "/stream count")
        else:
            shape.kind = KIND_HELLO  # not a built-in path: the configured answer, with the header's controls
            query = b""
    if query:
        for item in query.split(b"&"):
            if not item:
                continue
            raw_key, _, raw_value = item.partition(b"=")
            key = unquote_to_bytes(raw_key.replace(b"+", b" ")).decode("latin-1")
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("latin-1")
            if shape.kind == KIND_DRIP and key in ("duration", "numbytes"):
                drip[key] = value
            elif key in CONTROLS:  # other names are the client's own (a load tool's cache-buster): ignored
                apply(shape, key, value)
    if control is not None:
        try:
            controls = json.loads(control)
        except ValueError:
            raise BadControl("X-Fastcluster-Response must be a JSON object") from None
        if not isinstance(controls, dict):
            raise BadControl("X-Fastcluster-Response must be a JSON object")
        for key, value in controls.items():
            if key == "delay" and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            elif key in ("status", "size") and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            apply(shape, key, value)
    if "duration" in drip:
        shape.duration = seconds(drip["duration"], 1.0, "duration")
    if "numbytes" in drip:
        shape.count = whole_number(drip["numbytes"], "numbytes")
    return shape


def headers_json(list headers) -> bytes:
    """The request headers as a JSON object; a repeated header's values are joined with ", "."""
    collected = {}
    for name, value in headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        collected[key] = collected[key] + ", " + text if key in collected else text
    return json.dumps({"headers": collected}).encode() + b"\n"


def pattern_body(long long size) -> bytes:
    """The first `size` bytes of the deterministic body (for answers small enough to prebuild)."""
    return BLOCK_BYTES * (size // BLOCK) + BLOCK_BYTES[:size % BLOCK]


def chunk(bytes data) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


cdef class Whole(Producer):
    """A prebuilt answer sent once its delay is over."""

    def __init__(self, bytes data, double ready_at):
        self.head = data
        self.ready_at = ready_at
        self.total = body_length(data)


cdef class Pattern(Producer):
    """The deterministic body of any length, a 64 KiB block at a time, never held whole in memory."""

    def __init__(self, bytes head, long long size, bint chunked, double ready_at):
        self.head = head
        self.remaining = size
        self.chunked = chunked
        self.ready_at = ready_at
        self.total = size

    cdef object body_piece(self, double now):
        cdef long long length
        if self.remaining == 0:
            if self.chunked:
                self.chunked = False
                return LAST_CHUNK
            return None
        length = min(self.remaining, BLOCK)
        self.remaining -= length
        if length == BLOCK:
            return CHUNKED_BLOCK if self.chunked else BLOCK_BYTES
        return chunk(BLOCK_BYTES[:length]) if self.chunked else BLOCK_BYTES[:length]


cdef class Stream(Producer):
    """/stream/{n}: n chunks of one JSON line each, then the last chunk (unframed lines for HTTP/1.0)."""

    def __init__(self, bytes head, long long count, bint framed, double ready_at):
        self.head = head
        self.framed = framed
        self.count = count
        self.ready_at = ready_at
        self.total = 0  # the chunks are not counted in advance

    cdef object body_piece(self, double now):
        if self.sent >= self.count:
            if self.sent > self.count or not self.framed:
                return None
            self.sent += 1
            return LAST_CHUNK
        self.sent += 1
        line = b'{"id": %d}\n' % (self.sent - 1)
        return chunk(line) if self.framed else line


cdef class Drip(Producer):
    """/drip: `count` bytes spread evenly over `duration` seconds, the first at once."""

    def __init__(self, bytes head, long long count, double duration, double ready_at):
        self.head = head
        self.count = count
        self.start = ready_at
        self.pause = duration / count if count else 0.0
        self.ready_at = ready_at
        self.total = count

    cdef object body_piece(self, double now):
        cdef long long due
        if self.sent == self.count:
            return None
        due = self.count if self.pause <= 0 else min(
            self.count, <long long>((now - self.start) / self.pause + 1e-9) + 1)
        if due <= self.sent:
            # Never a time already past: rounding must not leave the drip waiting for a timer that has fired.
            self.ready_at = max(self.start + self.sent * self.pause, now + 0.0005)
            return b""
        piece = b"*" * (due - self.sent)
        self.sent = due
        return piece
