# Response heads for apps' answers: checks the status and headers an app hands us (so no app can split a
# response or frame it twice) and writes the head in one allocation, with Server, Date, Content-Length or
# chunked coding, and Connection: close where the connection ends.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_AsLatin1String, PyUnicode_Check
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcpy

from fastcluster.core.responder cimport status_line
from fastcluster.core.syscalls cimport strncasecmp


class BadResponse(Exception):
    """The app's response cannot be sent as it is; the message names what is wrong (for the log)."""


cdef bint TOKEN[256]
for _char in bytearray(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"):
    TOKEN[_char] = True

# Status lines by code, made on first use.
cdef list STATUS_LINES = [None] * 600


cdef class Head:
    def __repr__(self):
        return f"Head({self.status}, {self.lines!r}, {self.length})"


cdef bytes as_bytes(object text):
    if PyBytes_CheckExact(text):
        return <bytes>text
    if PyUnicode_Check(text):
        try:
            return PyUnicode_AsLatin1String(text)
        except UnicodeEncodeError:
            raise BadResponse(f"{text!r} is not latin-1") from None
    if isinstance(text, bytes):
        return bytes(text)
    raise BadResponse(f"{text!r} is neither bytes nor str")


cdef bytes body_bytes(object piece):
    """A piece of an app's body as bytes; anything but bytes-like is an app error (bytes() of an int would
    make that many zero bytes: a WSGI app that returned b"..." instead of [b"..."] iterates to ints)."""
    if PyBytes_CheckExact(piece):
        return <bytes>piece
    if isinstance(piece, (bytes, bytearray, memoryview)):
        return bytes(piece)
    raise BadResponse(f"the app's body gave {type(piece).__name__}, not bytes")


cdef bint is_token(bytes name) noexcept:
    cdef const unsigned char *chars = <const unsigned char *>PyBytes_AS_STRING(name)
    cdef Py_ssize_t i, size = PyBytes_GET_SIZE(name)
    if size == 0:
        return False
    for i in range(size):
        if not TOKEN[chars[i]]:
            return False
    return True


cdef bint is_field_value(bytes value) noexcept:
    cdef const char *chars = PyBytes_AS_STRING(value)
    cdef size_t size = PyBytes_GET_SIZE(value)
    return (memchr(chars, c'\r', size) == NULL and memchr(chars, c'\n', size) == NULL
            and memchr(chars, 0, size) == NULL)


cdef bint name_is(bytes name, const char *wanted, Py_ssize_t length) noexcept:
    return PyBytes_GET_SIZE(name) == length and strncasecmp(PyBytes_AS_STRING(name), wanted, length) == 0


cdef bint is_framing(bytes name) noexcept:
    """Connection, Transfer-Encoding, Date or Server: headers we write ourselves."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(name)
    if size == 4:
        return name_is(name, b"date", 4)
    if size == 6:
        return name_is(name, b"server", 6)
    if size == 10:
        return name_is(name, b"connection", 10)
    return size == 17 and name_is(name, b"transfer-encoding", 17)


cdef long long parse_length(bytes value) except -2:
    """A Content-Length value: digits (optional spaces around), else BadResponse."""
    cdef const char *chars = PyBytes_AS_STRING(value)
    cdef Py_ssize_t i = 0, end = PyBytes_GET_SIZE(value)
    cdef long long number = 0
    while i < end and chars[i] == c' ':
        i += 1
    while end > i and chars[end - 1] == c' ':
        end -= 1
    if i == end or end - i > 18:
        raise BadResponse(f"invalid Content-Length {value!r}")
    while i < end:
        if not c'0' <= chars[i] <= c'9':
            raise BadResponse(f"invalid Content-Length {value!r}")
        number = number * 10 + (chars[i] - c'0')
        i += 1
    return number


cdef struct LineBuffer:
    char *data
    Py_ssize_t size
    Py_ssize_t capacity
    bint on_heap


cdef int append_line(LineBuffer *lines, bytes name, bytes value) except -1:
    """name: value CRLF at the end of lines, growing it onto the heap when the stack space is full."""
    cdef Py_ssize_t name_size = PyBytes_GET_SIZE(name), value_size = PyBytes_GET_SIZE(value)
    cdef Py_ssize_t needed = lines.size + name_size + value_size + 4
    cdef char *grown
    if needed > lines.capacity:
        grown = <char *>PyMem_Malloc(needed * 2)
        if grown == NULL:
            raise MemoryError()
        memcpy(grown, lines.data, lines.size)
        if lines.on_heap:
            PyMem_Free(lines.data)
        lines.data = grown
        lines.capacity = needed * 2
        lines.on_heap = True
    cdef char *at = lines.data + lines.size
    at = put_text(at, PyBytes_AS_STRING(name), name_size)
    at = put_text(at, ": ", 2)
    at = put_text(at, PyBytes_AS_STRING(value), value_size)
    put_text(at, "\r\n", 2)
    lines.size = needed
    return 0


cdef int check_headers(Head head, object headers) except -1:
    """Fill head.lines and head.length from the app's (name, value) pairs, or raise BadResponse. The lines
    are gathered in C (on the stack for the usual few headers) and made into bytes once."""
    cdef char stack_space[2048]
    cdef LineBuffer lines
    lines.data = stack_space
    lines.size = 0
    lines.capacity = sizeof(stack_space)
    lines.on_heap = False
    try:
        add_headers(head, headers, &lines)
        head.lines = PyBytes_FromStringAndSize(lines.data, lines.size)
    finally:
        if lines.on_heap:
            PyMem_Free(lines.data)
    return 0


cdef int add_headers(Head head, object headers, LineBuffer *lines) except -1:
    cdef bytes name, value
    cdef long long length
    head.length = -1
    for pair in headers:
        if PyTuple_CheckExact(pair) and PyTuple_GET_SIZE(pair) == 2:
            name = as_bytes(<object>PyTuple_GET_ITEM(pair, 0))
            value = as_bytes(<object>PyTuple_GET_ITEM(pair, 1))
        else:
            raw_name, raw_value = pair
            name = as_bytes(raw_name)
            value = as_bytes(raw_value)
        if not is_token(name):
            raise BadResponse(f"invalid header name {name!r}")
        if not is_field_value(value):
            raise BadResponse(f"invalid value for header {name.decode('latin-1')}: {value!r}")
        if name_is(name, b"content-length", 14):
            length = parse_length(value)
            if head.length != -1 and head.length != length:
                raise BadResponse(f"conflicting Content-Length values {head.length} and {length}")
            head.length = length
            continue  # written by frame(), once
        if is_framing(name):
            continue
        append_line(lines, name, value)
    return 0


cdef object informational(int status):
    # A client reads a 1xx as an interim answer and waits for the final one: no framing makes it the answer.
    return BadResponse(f"status {status} is informational (1xx): it cannot be the answer")


cdef Head asgi_head(object status, object headers):
    """An ASGI http.response.start's status (an int) and headers."""
    if type(status) is not int or not 100 <= status <= 599:
        raise BadResponse(f"status {status!r} is not a number from 100 to 599")
    if status < 200:
        raise informational(status)
    cdef Head head = Head.__new__(Head)
    head.status = status
    line = STATUS_LINES[head.status]
    if line is None:
        line = STATUS_LINES[head.status] = status_line(head.status)
    head.status_line = <bytes>line
    check_headers(head, headers)
    return head


cdef Head wsgi_head(object status, object headers):
    """A WSGI start_response's status ("200 OK": its reason phrase is sent as given) and headers."""
    cdef bytes text = as_bytes(status)
    cdef const char *chars = PyBytes_AS_STRING(text)
    cdef int code = 0
    cdef Py_ssize_t i
    if PyBytes_GET_SIZE(text) < 3 or (PyBytes_GET_SIZE(text) > 3 and chars[3] != c' '):
        raise BadResponse(f"invalid status {status!r}")
    for i in range(3):
        if not c'0' <= chars[i] <= c'9':
            raise BadResponse(f"invalid status {status!r}")
        code = code * 10 + (chars[i] - c'0')
    if not 100 <= code <= 599 or not is_field_value(text):
        raise BadResponse(f"invalid status {status!r}")
    if code < 200:
        raise informational(code)
    cdef Head head = Head.__new__(Head)
    head.status = code
    # A bare code gets the space the status line needs before its (empty) reason phrase.
    head.status_line = b"HTTP/1.1 " + text + (b" \r\n" if PyBytes_GET_SIZE(text) == 3 else b"\r\n")
    check_headers(head, headers)
    return head


cdef bint bodiless(int status) noexcept:
    return status < 200 or status == 204 or status == 304


cdef Py_ssize_t decimal(char *out, long long number) noexcept:
    """number (>= 0) in decimal digits at out; how many."""
    cdef char reversed_digits[24]
    cdef Py_ssize_t count = 0, i
    while True:
        reversed_digits[count] = c'0' + number % 10
        count += 1
        number //= 10
        if number == 0:
            break
    for i in range(count):
        out[i] = reversed_digits[count - 1 - i]
    return count


cdef inline char *put(char *at, bytes data) noexcept:
    memcpy(at, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    return at + PyBytes_GET_SIZE(data)


cdef inline char *put_text(char *at, const char *text, Py_ssize_t size) noexcept:
    memcpy(at, text, size)
    return at + size


cdef bytes frame(Head head, Responder responder, long long length, bint chunked, bint keep_alive, bytes body):
    """The head as sent (then body, when given: one allocation for a small answer). length -1: no
    Content-Length (chunked, or the close ends the body)."""
    cdef char digits[24]
    cdef Py_ssize_t digit_count = 0
    if length >= 0:
        digit_count = decimal(digits, length)
    cdef Py_ssize_t size = (PyBytes_GET_SIZE(head.status_line) + PyBytes_GET_SIZE(responder.server_line)
                            + PyBytes_GET_SIZE(responder.date_line) + PyBytes_GET_SIZE(head.lines) + 2)
    if length >= 0:
        size += 18 + digit_count
    elif chunked:
        size += 28
    if not keep_alive:
        size += 19
    if body is not None:
        size += PyBytes_GET_SIZE(body)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef char *at = PyBytes_AS_STRING(out)
    at = put(at, head.status_line)
    at = put(at, responder.server_line)
    at = put(at, responder.date_line)
    at = put(at, head.lines)
    if length >= 0:
        at = put_text(at, "Content-Length: ", 16)
        at = put_text(at, digits, digit_count)
        at = put_text(at, "\r\n", 2)
    elif chunked:
        at = put_text(at, "Transfer-Encoding: chunked\r\n", 28)
    if not keep_alive:
        at = put_text(at, "Connection: close\r\n", 19)
    at = put_text(at, "\r\n", 2)
    if body is not None:
        put(at, body)
    return out


cdef bytes error_answer(Responder responder, int status, bint keep_alive, bint head_only):
    """A short plain-text answer of our own (the app failed); to a HEAD request, its head alone (a body there
    would be read as the start of the next answer)."""
    cdef Head head = asgi_head(status, ((b"content-type", b"text/plain; charset=utf-8"),))
    reason = head.status_line[13:PyBytes_GET_SIZE(head.status_line) - 2]
    return frame(head, responder, PyBytes_GET_SIZE(reason), False, keep_alive, None if head_only else reason)


cdef bytes chunk(bytes data):
    """data as one chunk of a chunked body."""
    cdef char digits[24]
    cdef Py_ssize_t digit_count = snprintf(digits, sizeof(digits), "%zx\r\n", PyBytes_GET_SIZE(data))
    cdef bytes out = PyBytes_FromStringAndSize(NULL, digit_count + PyBytes_GET_SIZE(data) + 2)
    cdef char *at = put_text(PyBytes_AS_STRING(out), digits, digit_count)
    at = put(at, data)
    put_text(at, "\r\n", 2)
    return out
