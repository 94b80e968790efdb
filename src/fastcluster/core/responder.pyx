# The built-in responder: the fixed answer `fastcluster serve` gives when no app is loaded, and the error
# answers every connection uses. Every answer is prebuilt bytes, rebuilt only when the Date changes.
from email.utils import formatdate
from http import HTTPStatus

from libc.string cimport memcmp, memchr

JSON_BODY = b'{"message":"Hello, World!"}'


cdef bytes status_line(int status):
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


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


cdef bint path_is(bytes url, const char *path, Py_ssize_t path_length) noexcept:
    cdef const char *data = url
    cdef Py_ssize_t length = len(url)
    cdef Py_ssize_t start = path_start(data, length)
    cdef Py_ssize_t end = start + path_length
    if end > length or memcmp(data + start, path, path_length) != 0:
        return False
    return end == length or data[end] == c'?' or data[end] == c'#'


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
                                             self.body, keep_alive, head))
                self.json.append(self.build(json_status, b"application/json", b"", JSON_BODY, keep_alive,
                                            head))
        self.errors = {}
        self.max_answer = 0
        for answer in self.fixed + self.json:
            self.max_answer = max(self.max_answer, len(answer))

    cdef bytes answer(self, bytes url, bint head, bint keep_alive):
        if path_is(url, b"/json", 5):
            self.answered_status = 200
            return self.json[keep_alive * 2 + head]
        self.answered_status = self.status
        return self.fixed[keep_alive * 2 + head]

    cdef bytes error(self, int status):
        """The answer to a request we refuse: a short text body naming the status, then the connection closes."""
        response = self.errors.get(status)
        if response is None:
            line = status_line(status)
            reason = line[13:]
            response = self.build(line, b"text/plain", b"", reason, False, False)
            self.errors[status] = response
        return response

    def answer_for(self, url: bytes, head: bool = False, keep_alive: bool = True) -> bytes:
        """The bytes sent for a request to `url` (for tests and tools, not the hot path)."""
        return self.answer(url, head, keep_alive)
