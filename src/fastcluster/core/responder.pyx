# The built-in responder: the fixed answer `fastcluster serve` gives when no app is loaded, and the error
# answers every connection uses. Every answer is prebuilt bytes, rebuilt only when the Date changes; a large
# fixed body is sent by sendfile from an in-memory file.
from email.utils import formatdate
import os
from http import HTTPStatus

from libc.string cimport memcmp

from fastcluster.core.producer cimport Producer
from fastcluster.core.static cimport FileBody, file_of_descriptor
from fastcluster.core.routes cimport (
    KIND_BYTES,
    KIND_DRIP,
    KIND_ECHO,
    KIND_HEADERS,
    KIND_HELLO,
    KIND_JSON,
    KIND_STATUS,
    KIND_STREAM,
    ROUTE_ECHO,
    ROUTE_HEADERS,
    Drip,
    Pattern,
    Shape,
    Stream,
    Whole,
    path_start,
)

from fastcluster.core.routes import BadControl, chunk, headers_json, pattern_body, shape_of

JSON_BODY = b'{"message":"Hello, World!"}'
# A fixed body larger than this is sent by sendfile from memory; smaller ones are copied with their head,
# which costs less up to about 80 KiB (measured: 64 KiB copied 17.8 µs/request, by sendfile 21.2).
DEF SENDFILE_ABOVE = 65536
# Shaped answers with bodies up to this size are prebuilt whole; larger ones are produced piece by piece.
DEF PREBUILT_BODY = 65536
# The cache of shaped answers: at most this many shapes, and this many bytes of prebuilt answers.
DEF MAX_SHAPES = 1024
DEF MAX_SHAPE_BYTES = 16 * 1024 * 1024


cdef bytes status_line(int status):
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


cdef OpenFile memory_file(bytes body):
    """body in an anonymous in-memory file, to send with sendfile: the kernel then passes its pages on
    instead of copying the body for every answer (as nginx does with files)."""
    cdef OpenFile file = file_of_descriptor(os.memfd_create("fastcluster-body", os.MFD_CLOEXEC), len(body))
    view = memoryview(body)
    written = 0
    while written < len(body):
        written += os.write(file.fd, view[written:])
    return file


cdef bint path_is(bytes url, const char *path, Py_ssize_t path_length) noexcept:
    cdef const char *data = url
    cdef Py_ssize_t length = len(url)
    cdef Py_ssize_t start = path_start(data, length)
    cdef Py_ssize_t end = start + path_length
    if end > length or memcmp(data + start, path, path_length) != 0:
        return False
    return end == length or data[end] == c'?' or data[end] == c'#'


cdef class Plan:
    """A shaped answer prebuilt for one distinct request shape: the whole answer when it is small and
    immediate, else what a producer needs to send it."""


cdef class Responder:
    def __init__(self, *, body: bytes = b"Hello, World!", status: int = 200,
                 content_type: bytes = b"text/plain", headers=(), server_header: bytes | None = b"fastcluster"):
        self.server_line = b"Server: " + server_header + b"\r\n" if server_header else b""
        self.status_line = status_line(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        lines = []
        for name, value in headers:
            if name.lower() == b"content-type":
                self.content_type = value
            else:
                lines.append(name + b": " + value + b"\r\n")
        self.extra_headers = b"".join(lines)
        if len(body) > SENDFILE_ABOVE:
            self.body_file = memory_file(body)
        self.refresh(0)

    cdef bytes build(self, bytes status, bytes content_type, bytes extra, bytes body, bint keep_alive,
                     bint head):
        head_bytes = b"".join([
            status, self.server_line, self.date_line,
            b"Content-Type: ", content_type, b"\r\n",
            b"Content-Length: ", str(len(body)).encode(), b"\r\n",
            extra,
            b"" if keep_alive else b"Connection: close\r\n",
            b"\r\n",
        ])
        return head_bytes if head else head_bytes + body

    cpdef refresh(self, double wall_time):
        """Rebuild every prebuilt answer around the Date of `wall_time` (0 means now)."""
        date = formatdate(wall_time or None, usegmt=True).encode()
        if date == self.date:
            return
        self.date = date
        self.date_line = b"Date: " + date + b"\r\n"
        cdef int keep_alive, head
        json_status = status_line(200)
        self.fixed = []
        self.json = []
        for keep_alive in range(2):
            for head in range(2):
                self.fixed.append(self.build(self.status_line, self.content_type, self.extra_headers,
                                             self.body, keep_alive, head or self.body_file is not None))
                self.json.append(self.build(json_status, b"application/json", b"", JSON_BODY, keep_alive,
                                            head))
        self.errors = {}
        self.plans = {}
        self.plan_bytes = 0
        self.max_answer = 0
        for answer in self.fixed + self.json:
            self.max_answer = max(self.max_answer, len(answer))

    cdef object answer(self, bytes url, bint head, bint keep_alive):
        """The fixed answer: bytes, or for a large body its head and the body by sendfile."""
        if path_is(url, b"/json", 5):
            self.answered_status = 200
            return self.json[keep_alive * 2 + head]
        self.answered_status = self.status
        if self.body_file is not None and not head:
            return FileBody(self.fixed[keep_alive * 2 + 1], self.body_file, 0, self.body_file.size)
        return self.fixed[keep_alive * 2 + head]

    cdef bytes error(self, int status, bint head):
        """The answer to a request we refuse: a short text body naming the status (none for HEAD), then the
        connection closes."""
        response = self.errors.get(status * 2 + head)
        if response is None:
            line = status_line(status)
            reason = line[13:]
            response = self.build(line, b"text/plain", b"", reason, False, head)
            self.errors[status * 2 + head] = response
        return response

    cdef object respond(self, bytes url, int route, bytes control, list headers, list body, bint head,
                        bint keep_alive, bint http10, double now):
        """The answer to a shaped request: bytes, or a Producer for large, delayed or streamed ones. Sets
        answered_status and answered_close."""
        cdef Plan plan
        key = None
        if route != ROUTE_HEADERS and route != ROUTE_ECHO:
            key = (url, control, head, keep_alive, http10)
            plan = self.plans.pop(key, None)
            if plan is not None:
                self.plans[key] = plan  # most recently used last
                return self.start(plan, now)
        try:
            shape = shape_of(url, control)
            if ((shape.kind == KIND_HELLO or shape.kind == KIND_JSON) and shape.status < 0 and shape.size < 0
                    and shape.delay == 0 and not shape.headers and not shape.chunked and not shape.close):
                # No control after all (`/?_=123`): the prebuilt answer, and no shape cached for a URL that
                # a load tool may never send again.
                self.answered_close = False
                return self.answer(url, head, keep_alive)
            plan = self.plan(shape, headers, body, head, keep_alive, http10)
        except BadControl as exc:
            plan = Plan()
            plan.status = 400
            plan.whole = self.build(status_line(400), b"text/plain", b"", str(exc).encode() + b"\n",
                                    keep_alive, head)
        if key is not None:
            self.remember(key, plan)
        return self.start(plan, now)

    cdef int remember(self, tuple key, Plan plan) except -1:
        cdef Plan oldest
        cdef Py_ssize_t size = len(plan.whole or b"") + len(plan.head or b"")
        if size > MAX_SHAPE_BYTES // 16:
            return 0
        self.plans[key] = plan
        self.plan_bytes += size
        while len(self.plans) > MAX_SHAPES or self.plan_bytes > MAX_SHAPE_BYTES:
            oldest = self.plans.pop(next(iter(self.plans)))
            self.plan_bytes -= len(oldest.whole or b"") + len(oldest.head or b"")
        return 0

    cdef object start(self, Plan plan, double now):
        self.answered_status = plan.status
        self.answered_close = plan.close
        if plan.whole is not None:
            return plan.whole if plan.delay == 0 else Whole(plan.whole, now + plan.delay)
        if plan.kind == KIND_STREAM:
            return Stream(plan.head, plan.count, plan.chunked, now + plan.delay)
        if plan.kind == KIND_DRIP:
            return Drip(plan.head, plan.count, plan.duration, now + plan.delay)
        return Pattern(plan.head, plan.size, plan.chunked, now + plan.delay)

    cdef Plan plan(self, Shape shape, list headers, list body, bint head, bint keep_alive, bint http10):
        cdef Plan plan = Plan()
        cdef int kind = shape.kind
        cdef int status = 200
        content_type = b"text/plain"
        extra = b""
        content = b""
        if kind == KIND_HELLO:
            status, content_type, extra, content = self.status, self.content_type, self.extra_headers, self.body
        elif kind == KIND_JSON:
            content_type, content = b"application/json", JSON_BODY
        elif kind == KIND_STATUS:
            status = shape.status
            content = status_line(status)[9:]
        elif kind == KIND_BYTES:
            content_type = b"application/octet-stream"
        elif kind == KIND_ECHO:
            content_type = b"application/octet-stream"
            for name, value in headers:
                if name.lower() == b"content-type":
                    content_type = value
            content = b"".join(body or ())
        elif kind == KIND_HEADERS:
            content_type, content = b"application/json", headers_json(headers)
        elif kind == KIND_STREAM:
            content_type = b"application/json"
        elif kind == KIND_DRIP:
            content_type = b"application/octet-stream"
        if shape.status >= 0:
            status = shape.status
        interim = b""
        if status < 200:
            # A 1xx is never the final answer: it goes out as an interim answer (with the header controls, as
            # 103 Early Hints carries Link) before a 200; not to HTTP/1.0, which has none (RFC 9110 15.2).
            if status == 101:
                raise BadControl("status 101 would switch protocols, and no Upgrade is offered")
            if not http10:
                interim = b"".join([status_line(status)] + [name + b": " + value + b"\r\n"
                                                             for name, value in shape.headers] + [b"\r\n"])
            if kind == KIND_STATUS:
                content = status_line(200)[9:]
            status = 200
        size = len(content)
        if shape.size >= 0 and kind != KIND_DRIP:
            kind = KIND_BYTES
            size = shape.size
        elif kind == KIND_BYTES:
            size = shape.size
        elif kind == KIND_DRIP:
            size = shape.count
        plan.status = status
        plan.close = shape.close or not keep_alive
        plan.kind = kind
        plan.size = size
        plan.count = shape.count
        plan.delay = shape.delay
        plan.duration = shape.duration
        bodiless = status < 200 or status == 204 or status == 304
        # HTTP/1.0 has no chunked coding: its bodies get a Content-Length, or (/stream) end with the connection.
        plan.chunked = (shape.chunked or kind == KIND_STREAM) and not bodiless and kind != KIND_DRIP and not http10
        unframed = kind == KIND_STREAM and http10 and not bodiless
        if unframed:
            plan.close = True
        lines = [status_line(status), self.server_line, self.date_line]
        if not bodiless:
            lines += [b"Content-Type: ", content_type, b"\r\n"]
            if plan.chunked:
                lines.append(b"Transfer-Encoding: chunked\r\n")
            elif not unframed:
                lines += [b"Content-Length: ", str(size).encode(), b"\r\n"]
        lines.append(extra)
        for name, value in shape.headers:
            lines += [name, b": ", value, b"\r\n"]
        if plan.close:
            lines.append(b"Connection: close\r\n")
        lines.append(b"\r\n")
        plan.head = interim + b"".join(lines)
        if head or bodiless:
            plan.whole = plan.head
        elif kind == KIND_BYTES and size <= PREBUILT_BODY:
            content = pattern_body(size)
            plan.whole = plan.head + (chunk(content) + b"0\r\n\r\n" if plan.chunked and size else
                                      b"0\r\n\r\n" if plan.chunked else content)
        elif kind != KIND_BYTES and kind != KIND_STREAM and kind != KIND_DRIP:
            plan.whole = plan.head + (chunk(content) + b"0\r\n\r\n" if plan.chunked and content else
                                      b"0\r\n\r\n" if plan.chunked else content)
        return plan

    def answer_for(self, url: bytes, head: bool = False, keep_alive: bool = True) -> bytes:
        """The bytes sent for a request to `url` (for tests and tools, not the hot path)."""
        return self.answer(url, head, keep_alive)
