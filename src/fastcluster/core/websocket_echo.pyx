# The built-in responder's `/ws`: a WebSocket that echoes every message back, shaped by the query:
# delay=MS before each echo, size=N to answer each message with N pattern bytes, close=CODE to close after
# the first message.
from urllib.parse import parse_qsl

from fastcluster.core.connection cimport Connection, split_target
from fastcluster.core.context cimport Context
from fastcluster.core.websocket cimport OP_TEXT, WebSocket, valid_close_code

from fastcluster.core.routes import PATTERN
from fastcluster.core.websocket import HandshakeError, check_handshake, refusal, switching_protocols

MAX_DELAY_MS = 3_600_000
#: The largest size= answer (each echo is one bytes object).
MAX_ECHO_SIZE = 64 << 20


cdef class EchoWebSocket(WebSocket):
    cdef:
        double delay
        int close_after
        # The echo waiting for its delay (due, text, payload), while reading waits behind it.
        list waiting
        bytes sized  # the size= answer (None: echo the message)
        bint resume_due  # a timer is set to resume reading

    def __init__(self, Connection conn, double delay, long long size, int close_after):
        self.delay = delay
        self.close_after = close_after
        if size >= 0:
            self.sized = (PATTERN * (size // 64 + 1))[:size]

    cdef int on_message(self, int opcode, bytes payload) except -1:
        cdef Context ctx = self.conn.ctx
        if self.sized is not None:
            payload = self.sized
        if self.delay > 0:
            if self.waiting is None:
                self.waiting = []
            self.waiting.append((ctx.now + self.delay, opcode == OP_TEXT, payload))
            if len(self.waiting) == 1:
                ctx.add_timer(ctx.now + self.delay, self.conn)
            return 0
        return self.echo(opcode == OP_TEXT, payload)

    cdef int echo(self, bint text, bytes payload) except -1:
        self.send_message(text, payload)
        if self.close_after:
            self.close(self.close_after)
        elif self.conn.output_size() > self.conn.ctx.max_pending_output:
            self.holding = True  # a slow reader: read no more of its messages until it catches up
        return 0

    cdef bint wants_more(self) noexcept:
        # One delayed echo at a time (a close behind it waits too), and none past the output limit.
        return not self.waiting and self.conn.output_size() <= self.conn.ctx.max_pending_output

    cdef int drained(self) except -1:
        if self.holding and not self.waiting and not self.resume_due:
            self.resume_due = True
            self.conn.ctx.add_timer(self.conn.ctx.now, self.conn)  # resumed by on_timer, outside the flush
        return 0

    cdef int on_timer(self, double now) except -1:
        while self.waiting and <double>self.waiting[0][0] <= now:
            _, text, payload = self.waiting.pop(0)
            self.echo(text, payload)
        if self.waiting:
            self.conn.ctx.add_timer(self.waiting[0][0], self.conn)
        self.resume_due = False
        if self.holding and self.wants_more():
            self.resume()
        return 0


def accept_builtin(Connection conn, bytes url, list headers) -> tuple:
    """Answer a request for `/ws`: (101, the handshake) with the connection switched to an echo, or
    (status, the refusal) when the request cannot have a WebSocket or its query is not understood."""
    cdef EchoWebSocket echo
    server_and_date = conn.ctx.responder.server_line + conn.ctx.responder.date_line
    try:
        accept = check_handshake(conn.method_name(), conn.http_version() == "1.1", headers)
        delay, size, close_after = echo_controls(split_target(url)[1])
        echo = EchoWebSocket(conn, delay, size, close_after)
        extensions = echo.negotiate(headers)
    except HandshakeError as error:
        return error.status, refusal(error, server_and_date)
    conn.upgrade(echo)
    echo.opened()
    return 101, switching_protocols(accept, server_and_date, extensions)


def echo_controls(bytes query) -> tuple:
    """(delay in seconds, size or -1, close code or 0) from the query; HandshakeError(400) if one is bad."""
    delay, size, close_after = 0.0, -1, 0
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in ("delay", "size", "close") and not value.isdigit():
            raise HandshakeError(400, f"{name}= takes a whole number, got {value!r}")
        if name == "delay":
            if int(value) > MAX_DELAY_MS:
                raise HandshakeError(400, f"delay= is at most {MAX_DELAY_MS} ms")
            delay = int(value) / 1000
        elif name == "size":
            size = int(value)
            if size > MAX_ECHO_SIZE:
                raise HandshakeError(400, f"size= is at most {MAX_ECHO_SIZE}")
        elif name == "close":
            close_after = int(value)
            if not valid_close_code(close_after):
                raise HandshakeError(400, f"close= is not a close code a server may send: {close_after}")
    return delay, size, close_after
