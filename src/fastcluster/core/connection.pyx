# One accepted socket: reads into the worker's shared buffer, feeds httptools (llhttp), enforces the
# limits llhttp does not, answers each complete request in order, and sends all the answers to one read in
# one send. Framing errors get their 4xx/5xx with Connection: close, and nothing more is parsed.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memchr

cdef extern from "<string.h>" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)
from posix.unistd cimport close as close_fd

import logging

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, parse_url

from fastcluster.core.routes cimport ROUTE_ECHO, ROUTE_HEADERS, ROUTE_JSON, ROUTE_WEBSOCKET, route_of
from fastcluster.core.parser_state cimport (
    ERROR_USER,
    METHOD_CONNECT,
    METHOD_HEAD,
    METHOD_OPTIONS,
    METHOD_RTSP_FIRST,
    METHOD_RTSP_LAST,
    METHOD_SOURCE,
    hook_chunk_extensions,
    hook_on_url,
    llhttp_state,
    parser_on_url,
    resume_after_extension_space,
    state_keeps_alive,
    state_of,
)
from fastcluster.core.stats cimport count_response, note_request
from fastcluster.core.transport cimport PLAIN, Transport
from fastcluster.core.syscalls cimport (
    EPOLL_CTL_MOD,
    EPOLLIN,
    EPOLLOUT,
    EPOLLRDHUP,
    AF_INET,
    AF_INET6,
    AF_UNIX,
    INET6_ADDRSTRLEN,
    iovec,
    SO_LINGER,
    SOL_SOCKET,
    epoll_ctl,
    epoll_event,
    getpeername,
    inet_ntop,
    ntohs,
    sockaddr,
    sockaddr_in,
    sockaddr_in6,
    sockaddr_storage,
    socklen_t,
    linger,
    monotonic,
    setsockopt,
    strncasecmp,
)

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
log = logging.getLogger("fastcluster.worker")
#: Seconds an idle keep-alive connection may stay open once its worker drains.
DEF DRAIN_IDLE_GRACE = 1.0
# Seconds idle after which a connection lets go of its per-request state (release_idle): long enough that
# a client busy with requests never pays for making it again.
DEF IDLE_RELEASE = 1.0
# Writes this large skip the shared buffer (no copy); smaller ones gather there into one send.
DEF DIRECT_WRITE = 16384
DEF MAX_IOV = 64
# Gathered answers leave early once they hold this much, or once the first has waited this long.
DEF GATHER_LIMIT = 262144
DEF GATHER_WAIT = 0.001


# Method names by llhttp's method number, filled as methods are first seen.
cdef list METHOD_NAMES = [None] * 256
# llhttp's numbers for these methods, for when its state is not read directly: Icecast's SOURCE and RTSP's
# own methods, which llhttp takes only with the ICE/1.0 and RTSP/1.0 protocols.
cdef dict NOT_HTTP_METHODS = {name: METHOD_SOURCE if name == b"SOURCE" else METHOD_RTSP_FIRST for name in (
    b"SOURCE", b"DESCRIBE", b"ANNOUNCE", b"SETUP", b"PLAY", b"PAUSE", b"TEARDOWN", b"GET_PARAMETER",
    b"SET_PARAMETER", b"REDIRECT", b"RECORD", b"FLUSH")}
# The connection whose input the parser is reading (the on_url hook's way back to it).
# Parsers a worker keeps for its connections' next requests (RequestParser); past this many, spares are freed.
DEF SPARE_PARSERS = 256
cdef Connection feeding = None


cdef int check_request_line(llhttp_state *state, const char *at, size_t length) noexcept:
    """httptools' on_url, behind the checks of the request line llhttp leaves out: RFC 9112 §3 puts one
    space between its parts (llhttp takes runs of them) and HTTP as its protocol (llhttp also takes RTSP/1.0
    and ICE/1.0). A request line that fails them gets a 400."""
    cdef Connection conn = feeding
    if conn is not None and conn.llhttp == state and not conn.request_line_ok(at, length):
        conn.reject_status = 400
        state.reason = "Invalid request line"
        return ERROR_USER
    return parser_on_url(state, at, length)


cdef int refuse_empty(llhttp_state *state, const char *at, size_t length, char opener) noexcept:
    """A chunk extension needs a name and, after "=", a value (RFC 9112 §7.1.1); llhttp takes `5;=v` and
    `5;a=`. An empty piece is an empty name or value when it comes right after the ";" or "=" (else it is
    the end of one that the input's end cut)."""
    cdef Connection conn = feeding
    if length == 0 and conn is not None and conn.llhttp == state:
        if (at[-1] if at > conn.parser.fed_start else conn.parser.fed_tail[1]) == opener:
            state.reason = "Empty chunk extension name or value"
            return ERROR_USER
    return 0


cdef int check_extension_name(llhttp_state *state, const char *at, size_t length) noexcept:
    cdef Connection conn = feeding
    if length == 0 and conn is not None and at < conn.parser.fed_end and at[0] == c'\t':
        return 0  # a tab where the name begins: llhttp refuses the tab next (see resume_after_extension_space)
    return refuse_empty(state, at, length, c';')


cdef int check_extension_value(llhttp_state *state, const char *at, size_t length) noexcept:
    return refuse_empty(state, at, length, c'=')


cdef tuple split_target(bytes url):
    """(path, query) of a request target: origin-form (the usual case, split here) or absolute-form."""
    cdef const char *chars = PyBytes_AS_STRING(url)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(url)
    cdef const char *mark
    cdef Py_ssize_t path_end
    if size == 0 or chars[0] != c'/':
        parsed = parse_url(url)
        return parsed.path or b"/", parsed.query or b""
    mark = <const char *>memchr(chars, c'#', size)
    if mark != NULL:
        size = mark - chars
    mark = <const char *>memchr(chars, c'?', size)
    if mark == NULL:
        return (url if size == PyBytes_GET_SIZE(url) else url[:size]), b""
    path_end = mark - chars
    return url[:path_end], url[path_end + 1:size]


class Rejected(Exception):
    """Raised from a parser callback to stop parsing; the status to answer is in Connection.reject_status."""


cdef bint name_is(bytes name, const char *wanted, Py_ssize_t length) noexcept:
    return PyBytes_GET_SIZE(name) == length and strncasecmp(PyBytes_AS_STRING(name), wanted, length) == 0


cdef bint value_is(bytes value, const char *wanted, Py_ssize_t length) noexcept:
    """name_is for a field value, whose trailing whitespace (OWS, RFC 9110 §5.5) llhttp leaves in it."""
    cdef const char *chars = PyBytes_AS_STRING(value)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(value)
    while size > length and (chars[size - 1] == c' ' or chars[size - 1] == c'\t'):
        size -= 1
    return size == length and strncasecmp(chars, wanted, length) == 0


cdef long long parse_length(bytes value) noexcept:
    """Content-Length as a number (llhttp has already checked it is digits); -1 past 2**62."""
    cdef long long number = 0
    cdef const char *digits = PyBytes_AS_STRING(value)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(value)):
        if c'0' <= digits[i] <= c'9':
            if number > (1LL << 62) // 10:
                return -1
            number = number * 10 + (digits[i] - c'0')
    return number


cdef Py_ssize_t head_end(const char *data, Py_ssize_t offset, Py_ssize_t length) noexcept:
    """The offset just past the next blank line (the end of a request head) after offset, else length."""
    cdef const char *found = <const char *>memmem(data + offset, length - offset, b"\r\n\r\n", 4)
    return length if found == NULL else found - data + 4


cdef int status_for_parser_error(exc) except -1:
    message = str(exc)
    if "HTTP version" in message:
        return 505
    return 400


cdef class Connection:
    def __cinit__(self, Context ctx, int fd, Transport transport=None):
        self.ctx = ctx
        self.fd = fd
        self.transport = PLAIN if transport is None else transport
        if ctx.app_factory is not None:
            self.app = <AppAdapter?>ctx.app_factory(self)
            self.app.conn = self
        self.client = False
        self.state = IDLE
        self.deadline = ctx.now + ctx.header_timeout
        self.events = EPOLLIN
        self.content_length = -1
        ctx.open_connections += 1
        ctx.stats.connections_open += 1
        ctx.stats.connections_total += 1

    # ---- parser callbacks (called by httptools during feed_data, through RequestParser) ----

    cdef int on_message_begin(self) except -1:
        if self.state == CLOSING:
            raise Rejected()  # an answer already ended the connection (while this read was parsed)
        self.state = READING_HEAD
        self.deadline = self.ctx.now + self.ctx.header_timeout
        self.url = None
        self.url_length = 0
        self.header_bytes = 0
        self.header_count = 0
        self.host_count = 0
        self.headers_done = False
        self.expect_continue = False
        self.chunked = False
        self.content_length = -1
        self.body_bytes = 0
        self.unaccounted = 0
        self.request_start = self.ctx.now
        self.control = None
        self.request_headers = self.request_body = None
        self.logged_headers = None
        if self.app is not None:
            self.headers = []
        return 0

    cdef int on_url(self, bytes url) except -1:
        self.unaccounted = 0
        self.url_length += PyBytes_GET_SIZE(url)
        if self.url_length > self.ctx.max_url:
            self.reject_status = 414
            raise Rejected()
        self.url = url if self.url is None else self.url + url
        return 0

    cdef int on_header(self, bytes name, bytes value) except -1:
        self.unaccounted = 0
        if self.headers_done:  # a trailer of a chunked body
            self.header_bytes += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
            if self.header_bytes > self.ctx.max_header_bytes:
                self.reject_status = 431
                raise Rejected()
            return 0
        self.header_count += 1
        if self.header_count == 1:  # the URL is complete: choose the route before the headers are read
            self.choose_route()
        if self.request_headers is not None:
            self.request_headers.append((name, value))
        self.header_bytes += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
        if self.header_count > self.ctx.max_headers or self.header_bytes > self.ctx.max_header_bytes:
            self.reject_status = 431
            raise Rejected()
        if self.app is not None:
            self.headers.append((name.lower(), value))
        elif self.ctx.log_headers:
            self.log_header(name, value)
        if name_is(name, b"host", 4):
            self.host_count += 1
        elif name_is(name, b"content-length", 14):
            self.content_length = parse_length(value)
            if self.content_length < 0 or self.content_length > self.ctx.max_body:
                self.reject_status = 413
                raise Rejected()
        elif name_is(name, b"transfer-encoding", 17):
            if not value_is(value, b"chunked", 7) or self.chunked:
                # We decode no other coding; and a repeated chunked is ambiguous framing.
                self.reject_status = 501 if not self.chunked else 400
                raise Rejected()
            self.chunked = True
        elif name_is(name, b"expect", 6):
            if not value_is(value, b"100-continue", 12):
                self.reject_status = 417
                raise Rejected()
            self.expect_continue = True
        elif name_is(name, b"x-fastcluster-response", 22):
            self.control = value
        return 0

    cdef int log_header(self, bytes name, bytes value) except -1:
        name = name.lower()
        if name in self.ctx.access_log.header_names:
            if self.logged_headers is None:
                self.logged_headers = {}
            self.logged_headers[name] = value
        return 0

    cdef int on_headers_complete(self) except -1:
        self.unaccounted = 0
        self.headers_done = True
        cdef llhttp_state *state = self.llhttp
        cdef bint http11
        cdef int method
        if state != NULL:
            if state.http_major != 1:
                self.reject_status = 505
                raise Rejected()
            http11 = state.http_minor == 1  # llhttp accepts no other 1.x
            method = state.method
        else:
            version = self.http_version()
            if version != "1.1" and version != "1.0":
                self.reject_status = 505
                raise Rejected()
            http11 = version == "1.1"
            name = self.method()
            method = METHOD_CONNECT if name == b"CONNECT" else (
                METHOD_OPTIONS if name == b"OPTIONS" else NOT_HTTP_METHODS.get(name, 0))
        if method == METHOD_CONNECT:  # we are no proxy: a 2xx would tell the client its tunnel is open
            self.reject_status = 405
            raise Rejected()
        if method == METHOD_SOURCE or METHOD_RTSP_FIRST <= method <= METHOD_RTSP_LAST:
            self.reject_status = 400  # an ICE or RTSP request
            raise Rejected()
        if (http11 and self.host_count != 1) or (not http11 and (self.host_count > 1 or self.chunked)):
            self.reject_status = 400
            raise Rejected()
        if self.url is None or (PyBytes_AS_STRING(self.url)[0] != c'/' and not self.target_ok(method)):
            self.reject_status = 400
            raise Rejected()
        if self.header_count == 0:
            self.choose_route()
        self.upgrade_asked = state.upgrade if state != NULL else self.parser.parser.should_upgrade()
        if self.ctx.limit_concurrency and self.ctx.in_flight >= self.ctx.limit_concurrency:
            self.reject_status = 503  # --limit-concurrency: the worker holds as many requests as it may
            raise Rejected()
        if self.chunked or self.content_length > 0:
            self.state = READING_BODY
            self.deadline = self.ctx.now + self.ctx.body_timeout
            if self.expect_continue and http11:
                self.send_answer(CONTINUE_100)
        if self.app is not None:
            keeps_alive = not self.upgrade_asked and (state_keeps_alive(state) if state != NULL else
                                                      self.keeps_alive())
            self.busy += 1
            self.ctx.in_flight += 1
            try:
                self.app.request(self.method_name(), self.url, http11, self.headers,
                                 keeps_alive and not self.ctx.draining)
            except BaseException:
                self.busy -= 1  # the app does not have it (a target it cannot split): our 400 answers it
                self.ctx.in_flight -= 1
                raise
            self.app_request_open = True
            self.headers = None
        if self.upgrade_asked and self.upgraded is None and not (self.app is None and self.route == ROUTE_WEBSOCKET):
            # No protocol switch for this one (the ASGI adapter and /ws take WebSocket handshakes as they
            # are parsed): it is answered as a plain request, then the connection closes. Its body is read as
            # such (RFC 9110 7.8), where llhttp would take it for the new protocol's first bytes.
            self.linger_on_close = True
            if state != NULL:
                state.upgrade = 0
        return 0

    cdef int on_body(self, bytes body) except -1:
        self.unaccounted -= PyBytes_GET_SIZE(body)
        self.body_bytes += PyBytes_GET_SIZE(body)
        self.deadline = self.ctx.now + self.ctx.body_timeout
        if self.body_bytes > self.ctx.max_body:
            self.reject_status = 413
            raise Rejected()
        if self.app is not None:
            self.app.body(body)
        elif self.route == ROUTE_ECHO:
            if self.request_body is None:
                self.request_body = []
            self.request_body.append(body)
        return 0

    cdef bint request_line_ok(self, const char *at, size_t length) noexcept:
        """Whether the bytes around this piece of the target (at, inside the input being fed) are a single
        space on each side and then the protocol's first letter, as far as the input fed so far shows."""
        cdef const char *after = at + length
        cdef char before
        cdef RequestParser parser = self.parser
        if self.url is None:  # the target's first piece: llhttp has skipped the spaces before it
            before = at[-2] if at - 2 >= parser.fed_start else parser.fed_tail[at - parser.fed_start]
            if before == c' ':
                return False
        if after < parser.fed_end and after[0] == c' ':  # the target ends here
            if after + 1 < parser.fed_end:
                return after[1] == c'H'
            parser.version_due = True
        return True

    cdef bint target_ok(self, int method) except -1:
        """A target not in origin-form: "*" is for OPTIONS only (RFC 9112 §3.2.4); otherwise it must be an
        absolute URI with a scheme and a host (authority-form is CONNECT's, refused before this)."""
        if self.url == b"*":
            return method == METHOD_OPTIONS
        try:
            parsed = parse_url(self.url)
        except HttpParserError:
            return False
        return bool(parsed.schema) and bool(parsed.host)

    cdef int choose_route(self) except -1:
        self.route = route_of(self.url)
        if (self.route == ROUTE_HEADERS or self.route == ROUTE_ECHO or self.route == ROUTE_WEBSOCKET
                or self.ctx.static is not None):
            self.request_headers = []
        return 0

    cdef int on_message_complete(self) except -1:
        cdef Context ctx = self.ctx
        cdef llhttp_state *state = self.llhttp
        cdef bint peer_keeps_alive, head, keep_alive
        if self.app is not None:
            return self.app_message_complete()
        if state != NULL:
            peer_keeps_alive = state_keeps_alive(state) and not self.upgrade_asked
            head = state.method == METHOD_HEAD
        else:
            peer_keeps_alive = self.keeps_alive() and not self.upgrade_asked
            head = self.method() == b"HEAD"
        keep_alive = peer_keeps_alive and not ctx.draining
        note_request(ctx.stats, state.method if state != NULL else 255, PyBytes_AS_STRING(self.url),
                     PyBytes_GET_SIZE(self.url))
        cdef int status
        answer = None
        if self.route <= ROUTE_JSON and self.control is None and ctx.static is None:
            answer = ctx.responder.answer(self.url, head, keep_alive)
            status = ctx.responder.answered_status
        else:
            if ctx.static is not None and (head or self.method() == b"GET"):
                answer = ctx.static.answer(self.url, self.request_headers, head, keep_alive,
                                           ctx.responder.server_line + ctx.responder.date_line, ctx.now)
                status = ctx.static.answered_status
            if answer is None and self.route == ROUTE_WEBSOCKET:
                status, answer = builtin_upgrade()(self, self.url, self.request_headers)
                keep_alive = keep_alive and status < 400 and self.upgraded is None
            if answer is None:
                http10 = state.http_minor == 0 if state != NULL else self.http_version() == "1.0"
                answer = ctx.responder.respond(self.url, self.route, self.control, self.request_headers,
                                               self.request_body, head, keep_alive, http10, ctx.now)
                status = ctx.responder.answered_status
                if ctx.responder.answered_close:
                    keep_alive = False
            self.request_headers = self.request_body = None
        logged_head = None
        if ctx.access_log is not None:  # for the log's response-header atoms (a producer drops it once sent)
            logged_head = answer if PyBytes_CheckExact(answer) else (<Producer>answer).head
        if self.producer is None and PyBytes_CheckExact(answer):
            self.write(<bytes>answer)
        else:
            if not PyBytes_CheckExact(answer):
                ctx.in_flight += 1  # an answer still to come (a delay, a stream): in flight until it ends
            self.send_answer(answer)
        count_response(ctx.stats, status, ctx.now - self.request_start)
        if ctx.access_log is not None:
            ctx.access_log.log(self, self.method(), self.url, self.http_version(), status,
                               body_length(<bytes>answer) if PyBytes_CheckExact(answer) else
                               (<Producer>answer).total, self.request_start, self.logged_headers, None,
                               logged_head)
        self.unaccounted = 0
        if self.upgraded is not None:
            return 0  # the parser stops at the upgrade: parse() hands the rest of the read over
        if keep_alive:
            self.state = IDLE
            self.deadline = ctx.now + ctx.keepalive_timeout
            return 0
        self.state = CLOSING
        if peer_keeps_alive:
            raise Rejected()  # we close, so no pipelined request after this one is answered
        return 0

    cdef int app_message_complete(self) except -1:
        """The request's body is all in: the app answers later; keep parsing only if it may be kept alive."""
        cdef Context ctx = self.ctx
        cdef llhttp_state *state = self.llhttp
        self.app_request_open = False
        note_request(ctx.stats, state.method if state != NULL else 255, PyBytes_AS_STRING(self.url),
                     PyBytes_GET_SIZE(self.url))
        self.unaccounted = 0
        self.state = IDLE
        self.deadline = ctx.now + ctx.keepalive_timeout
        if self.app.message_complete() == 0:
            self.stop_parsing = True  # this answer closes the connection: parse nothing after it
            raise Rejected()
        return 0

    # ---- the app's side (the ASGI/WSGI adapters) ----

    cdef str method_name(self):
        """The request's method as text, from a table by llhttp's method number (no bytes made)."""
        cdef llhttp_state *state = self.llhttp
        if state == NULL:
            return self.method().decode("ascii")
        name = METHOD_NAMES[state.method]
        if name is None:
            name = METHOD_NAMES[state.method] = self.method().decode("ascii")
        return <str>name

    # ---- the seam to an upgraded protocol (core/websocket.pyx) ----

    cdef int upgrade(self, UpgradedProtocol protocol) except -1:
        """Switch to protocol once the current request's answer (the 101) is written: the parser stops at
        the end of the head and the rest of the read, and every read after it, goes to protocol."""
        protocol.conn = self
        self.upgraded = protocol
        self.deadline = self.ctx.now + self.ctx.write_timeout
        return 0

    cdef int write_bytes(self, const char *data, Py_ssize_t length) except -1:
        """write() for bytes that are not an object yet: small ones are copied into the shared buffer."""
        if self.fd < 0:
            return 0
        if self.pending is None and length < DIRECT_WRITE:
            return self.ctx.out_append(data, length)
        return self.write(PyBytes_FromStringAndSize(data, length))

    cdef int end_upgraded(self, bint linger) except -1:
        """The upgraded protocol is done: close once its output is sent (lingering first if the peer may
        still be sending)."""
        if self.state == UPGRADED:
            self.state = CLOSING
            self.linger_on_close = linger
        return 0

    cdef int refuse(self, int status, bytes answer) except -1:
        """Answer the request being parsed ourselves (a handshake that cannot switch protocols) and close:
        raises Rejected, so the caller's parser callback ends the parse."""
        self.ctx.stats.client_errors += 1
        self.ctx.stats.status_classes[status // 100] += 1
        self.send_answer(answer)
        self.state = CLOSING
        self.linger_on_close = True
        raise Rejected()

    cdef void stop(self) noexcept:
        """Close now, the worker stopping: an upgraded protocol tells its peer first, best effort."""
        if self.state == UPGRADED and self.fd >= 0:
            try:
                self.upgraded.going_away()
                self.send_shared()
            except Exception:
                log.exception("the upgraded protocol failed to say goodbye")
                self.ctx.out_len = self.ctx.out_start
        self.close()

    cpdef object client_address(self):
        """The client's (host, port), looked up once; None for a peer that is not an IP socket. Sets
        `peer` for the access log on the way."""
        cdef sockaddr_storage address
        cdef socklen_t size = sizeof(address)
        cdef char text[INET6_ADDRSTRLEN]
        if self.client is False:
            self.client = None
            self.peer = "-"
            if self.fd >= 0 and getpeername(self.fd, <sockaddr *>&address, &size) == 0:
                if address.ss_family == AF_INET:
                    inet_ntop(AF_INET, &(<sockaddr_in *>&address).sin_addr, text, sizeof(text))
                    self.client = (text.decode("ascii"), ntohs((<sockaddr_in *>&address).sin_port))
                elif address.ss_family == AF_INET6:
                    inet_ntop(AF_INET6, &(<sockaddr_in6 *>&address).sin6_addr, text, sizeof(text))
                    self.client = (text.decode("ascii"), ntohs((<sockaddr_in6 *>&address).sin6_port))
                elif address.ss_family == AF_UNIX:
                    self.peer = "unix"
                if self.client is not None:
                    self.peer = self.client[0]
        return self.client

    cpdef int send(self, bytes data) except -1:
        """Write data after everything written before, and send what the socket takes now."""
        self.write_answer(data)
        return self.flush()

    cpdef int write_answer(self, bytes data) except -1:
        """Write data to leave with the flush that ends the current read: for an answer made while this
        connection parses, so the answers to all the requests of one read still go out in one send.
        Behind a file still being sent, it waits its turn."""
        if self.producer is not None:
            return self.send_answer(data)
        return self.write(data)

    cpdef int answered(self, int status, double started, bint keep_alive) except -1:
        """One app response is complete: count it, and close the connection if it is not kept alive."""
        cdef Context ctx = self.ctx
        count_response(ctx.stats, status, ctx.now - started)
        if self.fd < 0:
            return 0  # close() let go of the requests it was answering
        self.busy -= 1
        ctx.in_flight -= 1
        if self.held_answer is not None and (self.busy == 0 or not keep_alive):
            held, self.held_answer = self.held_answer, None
            if keep_alive:
                self.send_answer(held)  # the app's answers before it are all out
            self.release_requests()
            return self.flush()
        if not keep_alive:
            # The connection ends with this answer: requests parsed behind it are never answered, so they no
            # longer hold it open. Linger when the client sent any: it may still be sending more.
            self.state = CLOSING
            self.linger_on_close = self.stop_parsing or self.busy > 0
            self.release_requests()
            return self.flush()
        if self.busy == 0:
            self.deadline = ctx.now + ctx.keepalive_timeout
        return self.after_output()

    cdef bint closes_for_drain(self):
        """Whether the app answer being framed ends this connection because the worker drains: it is the
        only request the connection has (none behind it in flight or half-read). Its answer then says
        Connection: close, as the built-in responder's do, so the client does not send another request on a
        connection about to close."""
        return self.ctx.draining and self.busy == 1 and self.state == IDLE and self.unparsed is None

    cdef void release_requests(self) noexcept:
        """The app's requests on this connection will get no answer through it: they no longer count."""
        self.ctx.in_flight -= self.busy
        self.busy = 0

    cpdef int set_reading(self, bint reading) except -1:
        """Pause or resume reading the socket (flow control for a body the app has not consumed)."""
        self.reading_paused = not reading
        if self.fd >= 0:
            self.after_output()
        return 0

    @property
    def logs_access(self) -> bool:
        return self.ctx.access_log is not None

    def log_access(self, bytes method, bytes target, str version, int status, Py_ssize_t body_size,
                   double started, headers, str remote=None, response_headers=None) -> None:
        """An app's answer to the access log (the adapter calls it, before answered(), when logs_access);
        headers: anything with get(lower-cased name) -> bytes or None; remote: the client the adapter
        resolved (None: the peer); response_headers: the app's (name, value) pairs."""
        if self.ctx.access_log is not None and self.fd >= 0:
            self.ctx.access_log.log(self, method, target, version, status, body_size, started, headers,
                                    remote, response_headers)

    @property
    def output_waiting(self) -> int:
        return self.pending_size

    @property
    def closed(self) -> bool:
        return self.fd < 0

    @property
    def now(self) -> float:
        return self.ctx.now

    # ---- I/O ----

    cdef int on_readable(self) except -1:
        cdef Context ctx = self.ctx
        cdef ssize_t received = self.transport.read(self.fd, ctx.read_data, ctx.read_size)
        if received < 0:
            if errno == EAGAIN or errno == EINTR:
                if self.transport.read_wants:
                    self.set_events(self.events)  # a TLS handshake waits to write: watch EPOLLOUT too
                return 0
            self.close()
            return 0
        if received == 0:
            self.close()
            return 0
        ctx.stats.bytes_in += received
        if self.state == UPGRADED:
            self.upgraded.data_received(ctx.read_data, received)
        elif self.state == LINGERING or self.state == CLOSING or self.stop_parsing:
            return 0
        else:
            if self.state == IDLE and not self.busy:
                self.deadline = ctx.now + ctx.header_timeout
            self.parse(ctx.read_view, ctx.read_data, received)
        if ctx.gather_output and ctx.out_len > ctx.out_start:
            return self.gather()
        return self.flush()

    cdef int gather(self) except -1:
        """Keep this read's answers for the end of the loop turn (Context.gather_output), unless the
        connection is in a state where its output must settle now, or enough is gathered already."""
        cdef Context ctx = self.ctx
        if (self.pending is not None or self.producer is not None or self.peer_gone or self.state == CLOSING
                or self.unparsed is not None):
            return self.flush()
        self.gathered_start = ctx.out_start
        self.gathered_end = ctx.out_len
        ctx.out_start = ctx.out_len
        ctx.gathered.append(self)
        if len(ctx.gathered) == 1:
            ctx.gather_deadline = monotonic() + GATHER_WAIT
        elif ctx.out_len > GATHER_LIMIT or monotonic() > ctx.gather_deadline:
            send_gathered_output(ctx)
        return 0

    cdef int send_gathered(self) except -1:
        """Send this connection's gathered part; what the socket refuses waits as pending output."""
        if self.fd < 0:
            return 0
        self.send_out(self.gathered_start, self.gathered_end)
        if self.peer_gone:
            self.close()
            return 0
        return self.after_output()

    cdef int parse(self, object view, const char *data, Py_ssize_t length) except -1:
        """Feed data to the parser; stop and keep the rest while our unsent output is over the limit.

        Answers can be far larger than requests, so when one read could produce more output than the limit,
        the data is fed one request head at a time and the output checked in between.
        """
        global feeding
        cdef Context ctx = self.ctx
        cdef Py_ssize_t offset = 0, end
        cdef const char *resumed
        cdef bint whole = self.app is None and (
            (length // 16 + 1) * ctx.responder.max_answer <= ctx.max_pending_output)
        if self.parser is None:
            self.borrow_parser()
        while offset < length and self.state != CLOSING and not self.stop_parsing:
            if not whole and self.output_size() > ctx.max_pending_output:
                self.send_shared()
                if self.peer_gone:
                    return 0
                if self.pending_size > ctx.max_pending_output:
                    self.unparsed = bytes(view[offset:length])
                    return 0
            end = length if whole else head_end(data, offset, length)
            self.unaccounted += end - offset
            if self.parser.version_due:
                self.parser.version_due = False
                if data[offset] != c'H':
                    self.fail(400)  # a second space, or another protocol, after the request target
                    return 0
            feeding = self
            self.parser.fed_start = data + offset
            self.parser.fed_end = data + end
            try:
                self.parser.feed_data(ctx.read_prefix(end) if offset == 0 and view is ctx.read_view
                               else view[offset:end])
            except HttpParserUpgrade as upgrade:
                if self.upgraded is not None and self.state != CLOSING:
                    self.state = UPGRADED
                    end = offset + <Py_ssize_t>upgrade.args[0]
                    return self.upgraded.data_received(data + end, length - end)
                # No protocol switch was accepted: the request was answered, the rest is not ours to read.
                self.state = CLOSING
                self.linger_on_close = True
                return 0
            except HttpParserError as exc:
                resumed = NULL
                if not self.stop_parsing and self.state != CLOSING and self.llhttp != NULL:
                    resumed = resume_after_extension_space(self.llhttp, data + offset, data + end,
                                                           self.parser.fed_tail[1])
                if resumed != NULL:
                    # Whitespace after a chunk extension's ";": fed on from past it, as if it were not there
                    # (so `5; =v` is still an empty name). The bytes after it were counted already.
                    self.unaccounted -= data + end - resumed
                    self.parser.fed_tail[0] = self.parser.fed_tail[1] = c';'
                    offset = resumed - data
                    continue
                if self.stop_parsing:
                    pass  # an app request that ends the connection: its answer is still to come
                elif self.state != CLOSING:
                    self.fail(self.reject_status or status_for_parser_error(exc))
                else:
                    self.linger_on_close = True
                return 0
            self.parser.fed_tail[0] = data[end - 2] if end - offset >= 2 else self.parser.fed_tail[1]
            self.parser.fed_tail[1] = data[end - 1]
            offset = end
        if self.state == CLOSING:
            return 0
        if self.unaccounted > ctx.max_header_bytes and self.state != READING_BODY:
            self.fail(414 if self.url is None else 431)
        elif self.chunked and self.unaccounted > ctx.max_chunk_extension:
            self.fail(400)
        elif self.state == IDLE and self.upgraded is None:
            self.return_parser()  # between requests: llhttp is back at the start of a message
        return 0

    cdef int borrow_parser(self) except -1:
        """Take a parser from the worker's spares (or make one) for the bytes about to be fed."""
        cdef Context ctx = self.ctx
        cdef RequestParser parser
        if ctx.spare_parser is not None:
            parser = <RequestParser>ctx.spare_parser
            ctx.spare_parser = None
        elif ctx.spare_parsers:
            parser = <RequestParser>ctx.spare_parsers.pop()
        else:
            parser = RequestParser()
        parser.conn = self
        self.parser = parser
        self.llhttp = parser.llhttp
        ctx.parsers_lent += 1
        return 0

    cdef void return_parser(self) noexcept:
        """Give the parser back to the spares: the connection is between requests (llhttp is back at the
        start of a message) and holds no input back."""
        cdef Context ctx = self.ctx
        cdef RequestParser parser = self.parser
        parser.conn = None
        self.parser = None
        self.llhttp = NULL
        ctx.parsers_lent -= 1
        if ctx.spare_parser is None:
            ctx.spare_parser = parser
        elif len(ctx.spare_parsers) < SPARE_PARSERS:
            ctx.spare_parsers.append(parser)
        else:
            parser.discard()

    cdef void drop_parser(self) noexcept:
        """Let go of a parser that may be inside a message or past an error: it is never used again."""
        cdef RequestParser parser = self.parser
        parser.conn = None
        parser.discard()
        self.parser = None
        self.llhttp = NULL
        self.ctx.parsers_lent -= 1

    cdef object method(self):
        return self.parser.get_method()

    cdef object http_version(self):
        return self.parser.get_http_version()

    cdef object keeps_alive(self):
        return self.parser.should_keep_alive()

    cdef Py_ssize_t output_size(self) noexcept:
        return self.ctx.out_len - self.ctx.out_start + self.pending_size

    cdef int resume_parsing(self) except -1:
        """Parse the input held back by backpressure, now that the peer has read enough."""
        cdef bytes held = self.unparsed
        self.unparsed = None
        self.parse(memoryview(held), PyBytes_AS_STRING(held), PyBytes_GET_SIZE(held))
        return self.flush()

    cdef int fail(self, int status) except -1:
        cdef bint can_answer = True
        self.ctx.stats.client_errors += 1
        self.ctx.stats.status_classes[status // 100] += 1
        if self.app_request_open:
            # The app has this request, whose body will never be complete. While the app owes its answer
            # (answers go in order, and it is the last request), the error is its answer; once the app has
            # begun or given it, closing is all that can tell the client.
            self.app_request_open = False
            if self.busy:
                can_answer = not self.app.abandon()
                self.busy -= 1
                self.ctx.in_flight -= 1
            else:
                can_answer = False
        self.state = CLOSING
        self.linger_on_close = True
        if not can_answer:
            return 0
        # A HEAD request's error has no body (the connection closes after it all the same). Its method is
        # known once its target is.
        cdef bint head = self.url is not None and self.llhttp != NULL and self.llhttp.method == METHOD_HEAD
        if self.app is not None and self.busy:
            self.held_answer = self.ctx.responder.error(status, head)  # answers go out in request order
            return 0
        return self.send_answer(self.ctx.responder.error(status, head))

    cdef int send_answer(self, object answer) except -1:
        """Send an answer (bytes or Producer) after every answer before it, even those still being produced."""
        if self.producer is not None:
            if self.later is None:
                self.later = []
            self.later.append(answer)
            if PyBytes_CheckExact(answer):
                self.later_size += PyBytes_GET_SIZE(answer)
            return 0
        if PyBytes_CheckExact(answer):
            return self.write(<bytes>answer)
        self.producer = <Producer>answer
        return self.pump()

    cdef int pump(self) except -1:
        """Take the producer's pieces while our unsent output is under the limit, then the answers queued
        behind it; a producer with nothing due yet sets the timer that resumes it."""
        cdef Context ctx = self.ctx
        cdef object piece
        while self.producer is not None and self.fd >= 0 and not self.peer_gone:
            if self.output_size() > ctx.max_pending_output:
                return 0  # resumed on EPOLLOUT once the peer has read some
            if self.producer.file_due and self.producer.file_offset < self.producer.file_end:
                self.send_file()
                if self.file_blocked or self.pending is not None:
                    return 0
                continue
            piece = self.producer.next_piece(ctx.now)
            if piece is None:
                self.producer = None
                if self.app is None:
                    ctx.in_flight -= 1
                while self.later:
                    answer = self.later.pop(0)
                    if PyBytes_CheckExact(answer):
                        self.later_size -= PyBytes_GET_SIZE(answer)
                        self.write(<bytes>answer)
                    else:
                        self.producer = <Producer>answer
                        break
                if not self.later:
                    self.later = None
            elif PyBytes_GET_SIZE(piece) == 0:
                if self.timer_at != self.producer.ready_at:
                    self.timer_at = self.producer.ready_at
                    ctx.add_timer(self.timer_at, self)
                return 0
            else:
                self.write(<bytes>piece)
        return 0

    cdef int send_file(self) except -1:
        """Send the producer's file part with sendfile, after everything written before it, until the
        socket is full or a round's budget is spent (then EPOLLOUT resumes it, letting others have a turn)."""
        cdef Producer producer = self.producer
        cdef long offset = producer.file_offset
        cdef ssize_t sent
        cdef long long budget = 4 << 20
        self.send_shared()
        if self.pending is not None or self.peer_gone:
            return 0
        while offset < producer.file_end:
            if budget <= 0:
                self.file_blocked = True
                break
            sent = self.transport.send_file(self.fd, producer.file_fd, &offset,
                                            min(producer.file_end - offset, 1 << 20))
            if sent < 0:
                if errno == EAGAIN or errno == EINTR:
                    self.file_blocked = True
                else:
                    self.peer_gone = True
                    self.state = CLOSING
                break
            if sent == 0:  # the file shrank under us: the answer cannot be completed
                self.peer_gone = True
                self.state = CLOSING
                break
            self.ctx.stats.bytes_out += sent
            budget -= sent
        producer.file_offset = offset
        return 0

    cdef int on_timer(self) except -1:
        self.timer_at = 0
        if self.state == UPGRADED and self.fd >= 0:
            self.upgraded.on_timer(self.ctx.now)
            return self.flush()
        if self.fd < 0 or self.producer is None:
            return 0
        self.pump()
        return self.flush()

    cdef int write(self, bytes data) except -1:
        """Send data after everything written before it: small writes gather in the worker's shared buffer
        (sent by flush()), large ones go straight to the socket, and what the socket does not take waits in
        the pending queue by reference, never copied."""
        cdef Py_ssize_t length = PyBytes_GET_SIZE(data)
        cdef Context ctx = self.ctx
        if self.fd < 0:
            return 0  # closed: nobody to send to
        if self.pending is not None:
            return self.queue(data, 0)
        if length < DIRECT_WRITE:
            return ctx.out_append(PyBytes_AS_STRING(data), length)
        self.send_shared()
        if self.pending is not None or self.peer_gone:
            return self.queue(data, 0)
        cdef ssize_t sent = self.send_now(PyBytes_AS_STRING(data), length)
        if sent < length:
            self.queue(data, sent)
        return 0

    cdef ssize_t send_now(self, const char *data, Py_ssize_t length) except -2:
        """send() that counts; 0 when the socket is full; on a dead peer it marks the connection closing."""
        cdef ssize_t sent = self.transport.write(self.fd, data, length)
        if sent < 0:
            if errno != EAGAIN and errno != EINTR:
                self.peer_gone = True
                self.state = CLOSING
            return 0
        self.ctx.stats.bytes_out += sent
        return sent

    cdef int send_shared(self) except -1:
        """Send what the shared buffer holds for this connection; queue a copy of what the socket refuses."""
        cdef Context ctx = self.ctx
        if ctx.out_len == ctx.out_start:
            return 0
        self.send_out(ctx.out_start, ctx.out_len)
        ctx.out_len = ctx.out_start
        return 0

    cdef int send_out(self, Py_ssize_t start, Py_ssize_t end) except -1:
        """Send bytes start..end of the shared buffer after this connection's pending output; queue a copy
        of what the socket refuses."""
        cdef Context ctx = self.ctx
        cdef Py_ssize_t length = end - start
        cdef ssize_t sent = 0 if self.pending is not None or self.peer_gone else self.send_now(
            ctx.out + start, length)
        if sent < length and not self.peer_gone:
            self.queue(PyBytes_FromStringAndSize(ctx.out + start + sent, length - sent), 0)
        return 0

    cdef int queue(self, bytes data, Py_ssize_t already_sent) except -1:
        if self.peer_gone:
            return 0
        if self.pending is None:
            self.pending = []
            self.pending_offset = already_sent
            self.ctx.pending_buffers += 1
        self.pending.append(data)
        self.pending_size += PyBytes_GET_SIZE(data) - already_sent
        return 0

    cdef int flush(self) except -1:
        """Send what this connection has written since the last flush, then settle its epoll interest."""
        self.send_shared()
        if self.peer_gone:
            self.close()
            return 0
        return self.after_output()

    cdef int after_output(self) except -1:
        """Choose the epoll interest from what is left to send; finish a closing connection."""
        cdef Py_ssize_t waiting = self.pending_size
        cdef Context ctx = self.ctx
        if self.app is not None and waiting + self.later_size <= ctx.max_pending_output:
            self.app.drained()
        if self.upgraded is not None and waiting <= ctx.max_pending_output:
            self.upgraded.drained()
        if waiting:
            self.deadline = ctx.now + ctx.write_timeout
            if (waiting > ctx.max_pending_output or self.state == CLOSING or self.unparsed is not None
                    or self.reading_paused or self.producer is not None):
                self.set_events(EPOLLOUT)  # backpressure: read no more until the peer catches up
            else:
                self.set_events(EPOLLIN | EPOLLOUT)
            return 0
        if self.pending is not None:
            self.pending = None
            self.pending_offset = 0
            ctx.pending_buffers -= 1
        if self.producer is not None:
            if self.file_blocked:
                self.deadline = ctx.now + ctx.write_timeout
                self.set_events(EPOLLOUT)
            else:
                # The answer waits for its timer and requests behind it wait unread; a client that hangs up
                # meanwhile (a load tester's timeout) is noticed now, not when the delay ends.
                self.set_events(EPOLLRDHUP)
            return 0
        if self.state == CLOSING and not self.busy:
            if self.linger_on_close:
                self.transport.shutdown_write(self.fd)
                self.state = LINGERING
                self.deadline = ctx.now + ctx.linger_timeout
                self.set_events(EPOLLIN)
            else:
                self.close()
            return 0
        if self.unparsed is not None:
            self.set_events(EPOLLOUT)  # held-back input is parsed before anything new is read
            return 0
        if self.state == IDLE and ctx.draining and not self.busy:
            self.close_idle_soon()
        self.set_events(0 if self.reading_paused or self.state == CLOSING else EPOLLIN)
        return 0

    cdef int on_writable(self) except -1:
        cdef Context ctx = self.ctx
        if self.transport.read_wants:
            self.on_readable()  # the TLS read that had to write first: the socket has room now
            if self.fd < 0:
                return 0
        if self.pending is not None:
            self.send_pending()
            if self.peer_gone:
                self.close()
                return 0
        if self.producer is not None:
            self.file_blocked = False
            self.pump()
            self.send_shared()
            if self.peer_gone:
                self.close()
                return 0
        self.after_output()
        if (self.unparsed is not None and self.fd >= 0
                and self.pending_size <= ctx.max_pending_output):
            self.resume_parsing()
        return 0

    cdef int send_pending(self) except -1:
        """Send as much of the pending queue as the socket takes, in one sendmsg."""
        cdef iovec parts[MAX_IOV]
        cdef Py_ssize_t count = min(len(self.pending), MAX_IOV), i, offset = self.pending_offset
        cdef bytes item
        cdef ssize_t sent
        for i in range(count):
            item = <bytes>self.pending[i]
            parts[i].iov_base = PyBytes_AS_STRING(item) + offset
            parts[i].iov_len = PyBytes_GET_SIZE(item) - offset
            offset = 0
        sent = self.transport.write_parts(self.fd, parts, count)
        if sent < 0:
            if errno != EAGAIN and errno != EINTR:
                self.peer_gone = True
            return 0
        self.ctx.stats.bytes_out += sent
        self.pending_size -= sent
        sent += self.pending_offset
        i = 0
        while i < count and sent >= PyBytes_GET_SIZE(<bytes>self.pending[i]):
            sent -= PyBytes_GET_SIZE(<bytes>self.pending[i])
            i += 1
        del self.pending[:i]
        self.pending_offset = sent
        return 0

    cdef void set_events(self, uint32_t events) noexcept:
        cdef epoll_event event
        events |= self.transport.read_wants
        if events == self.events or self.fd < 0:
            return
        event.events = events
        event.data.u64 = <unsigned int>self.fd
        epoll_ctl(self.ctx.epfd, EPOLL_CTL_MOD, self.fd, &event)
        self.events = events

    cdef int check_deadline(self) except -1:
        """Called by the once-a-second sweep: act on a timeout that has passed."""
        if self.state == UPGRADED and self.pending is None and self.fd >= 0:
            self.upgraded.on_tick(self.ctx.now)
            return self.flush()
        if self.fd < 0:
            return 0
        if (self.state == IDLE and not self.busy and self.pending is None and self.producer is None
                and self.ctx.now + self.ctx.keepalive_timeout - self.deadline >= IDLE_RELEASE):
            self.release_idle()
        if self.ctx.now < self.deadline:
            return 0
        if self.producer is not None and self.pending is None and not self.file_blocked:
            return 0  # an answer waiting for its timer: not a stalled peer
        if self.pending is not None or self.file_blocked:
            self.abort()  # write stall: drop what the kernel still holds for this peer, too
            return 0
        if self.state == LINGERING or (self.state == IDLE and not self.busy):
            self.close()
            return 0
        if self.busy and (self.state == IDLE or self.state == CLOSING or self.stop_parsing):
            return 0  # the app is answering: a stuck app is the heartbeat's business
        self.fail(408)
        return self.flush()

    cdef void release_idle(self) noexcept:
        """Idle for a while: let go of what the next request can make again (the client's address, the
        app's per-connection state), so a connection that stays idle holds only this object."""
        self.client = False
        self.peer = None
        if self.app is not None:
            try:
                self.app.idle()
            except Exception:
                log.exception("the app adapter failed to let go of an idle connection's state")

    cdef int start_draining(self) except -1:
        if self.state == IDLE and self.pending is None and not self.busy and self.producer is None:
            self.close_idle_soon()
        return 0

    cdef void close_idle_soon(self) noexcept:
        """While draining, an idle keep-alive connection gets a short grace before we close it: a client
        under load sends its next request within it and gets a Connection: close answer, instead of racing
        our close with its request (which would fail it)."""
        if self.deadline > self.ctx.now + DRAIN_IDLE_GRACE:
            self.deadline = self.ctx.now + DRAIN_IDLE_GRACE

    cdef void abort(self) noexcept:
        """Close with a reset, discarding unsent data (for a peer that stopped reading)."""
        cdef linger reset
        reset.l_onoff = 1
        reset.l_linger = 0
        if self.fd >= 0:
            setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset))
        self.close()

    cdef void close(self) noexcept:
        cdef Context ctx = self.ctx
        if self.fd < 0:
            return
        self.transport.release()
        close_fd(self.fd)
        ctx.connections[self.fd] = None
        self.fd = -1
        if self.pending is not None:
            self.pending = None
            ctx.pending_buffers -= 1
        self.unparsed = None
        if self.app is None:  # the built-in answers still to come are no longer in flight
            if self.producer is not None:
                ctx.in_flight -= 1
            for answer in self.later or ():
                if not PyBytes_CheckExact(answer):
                    ctx.in_flight -= 1
        self.producer = None
        self.later = None
        self.later_size = 0
        if self.parser is not None:
            self.drop_parser()
        if self.upgraded is not None:
            upgraded, self.upgraded = self.upgraded, None
            try:
                upgraded.connection_lost()
            except Exception:
                log.exception("the upgraded protocol failed on a closed connection")
        if self.app is not None:
            self.release_requests()
            app, self.app = self.app, None
            try:
                app.connection_lost()
            except Exception:
                log.exception("the app adapter failed on a closed connection")
        ctx.open_connections -= 1
        ctx.stats.connections_open -= 1


cdef class RequestParser:
    """An httptools parser with the callbacks it calls, which hand each event to the connection it is lent to.
    A connection holds one only while a request is being received: from the read that brings its first
    byte to the end of the read that completes it, then it goes back to the worker's spares for any
    connection's next request (Context.spare_parser, then the list Context.spare_parsers: one connection
    at a time takes and gives back the single one without touching the list, whose pop and append would
    reallocate it each time). An idle keep-alive connection holds none (the parser, its llhttp state and
    settings and its bound callbacks are about 1.3 KB)."""

    def __cinit__(self):
        self.parser = HttpRequestParser(self)
        # Bound once: looking the methods up per request costs more than calling them.
        self.feed_data = self.parser.feed_data
        self.get_http_version = self.parser.get_http_version
        self.should_keep_alive = self.parser.should_keep_alive
        self.get_method = self.parser.get_method
        self.llhttp = state_of(self.parser)
        if self.llhttp != NULL:
            hook_on_url(self.llhttp, check_request_line)
            hook_chunk_extensions(self.llhttp, check_extension_name, check_extension_value)

    cdef void discard(self) noexcept:
        """Break the cycle with httptools (it holds our bound callbacks), so this is freed now, not by the GC."""
        self.parser = self.feed_data = self.get_http_version = self.should_keep_alive = self.get_method = None
        self.llhttp = NULL

    def on_message_begin(self):
        self.conn.on_message_begin()

    def on_url(self, bytes url):
        self.conn.on_url(url)

    def on_header(self, bytes name, bytes value):
        self.conn.on_header(name, value)

    def on_headers_complete(self):
        self.conn.on_headers_complete()

    def on_body(self, bytes body):
        self.conn.on_body(body)

    def on_chunk_header(self):
        self.conn.unaccounted = 0

    def on_chunk_complete(self):
        self.conn.unaccounted = 0

    def on_message_complete(self):
        self.conn.on_message_complete()


cdef class AppAdapter:
    cdef int request(self, str method, bytes url, bint http11, list headers, bint keep_alive) except -1:
        raise NotImplementedError

    cdef int body(self, bytes data) except -1:
        raise NotImplementedError

    cdef int message_complete(self) except -1:
        raise NotImplementedError

    cdef int abandon(self) except -1:
        raise NotImplementedError

    cdef object wait_for_drain(self, object loop, Py_ssize_t limit):
        """A future to wait on while the connection holds more than limit unsent bytes, else None."""
        if self.conn.pending_size + self.conn.later_size <= limit or self.conn.fd < 0:
            return None  # (output queued behind a file being sent counts too)
        self.drain_waiter = loop.create_future()
        return self.drain_waiter

    cdef int drained(self) except -1:
        if self.drain_waiter is not None:
            if not self.drain_waiter.done():
                self.drain_waiter.set_result(None)
            self.drain_waiter = None
        return 0

    cdef int idle(self) except -1:
        return 0

    cdef int connection_lost(self) except -1:
        return self.drained()


cdef class UpgradedProtocol:
    cdef int data_received(self, const char *data, Py_ssize_t length) except -1:
        raise NotImplementedError

    cdef int drained(self) except -1:
        return 0

    cdef int on_tick(self, double now) except -1:
        return 0

    cdef int on_timer(self, double now) except -1:
        return 0

    cdef int going_away(self) except -1:
        return 0

    cdef int connection_lost(self) except -1:
        return 0


cdef object builtin_upgrade_handler = None


cdef object builtin_upgrade():
    """The built-in responder's upgrade handler (core/websocket_echo.pyx), imported when first needed: that
    module builds on this one."""
    global builtin_upgrade_handler
    if builtin_upgrade_handler is None:
        from fastcluster.core.websocket_echo import accept_builtin
        builtin_upgrade_handler = accept_builtin
    return builtin_upgrade_handler


cdef int send_gathered_output(Context ctx) except -1:
    """Send the answers gathered in this loop turn, each connection's part in one send."""
    cdef Connection conn
    cdef list gathered = ctx.gathered
    if not gathered:
        return 0
    ctx.gathered = []
    for obj in gathered:
        conn = <Connection>obj
        conn.send_gathered()
    ctx.out_len = ctx.out_start = 0
    return 0
