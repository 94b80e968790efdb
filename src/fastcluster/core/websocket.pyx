# RFC 6455 WebSocket: the opening handshake's checks and answer, and the protocol a connection switches to
# after it: frames parsed and built in C (client frames masked, 7/16/64-bit lengths, fragmentation with
# control frames between fragments, UTF-8 checked incrementally across fragments, --ws-max-size), pings
# answered, idle peers pinged, and the closing handshake; permessage-deflate (RFC 7692, core/deflate.pyx)
# when agreed. What a message means is a subclass's business (the built-in echo in
# core/websocket_echo.pyx, ASGI apps in core/asgi_websocket.pyx).
from base64 import b64decode, b64encode
from binascii import Error as Base64Error
from hashlib import sha1

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memmove

from fastcluster.core.buffers cimport grow
from fastcluster.core.connection cimport UPGRADED, Connection, UpgradedProtocol
from fastcluster.core.deflate cimport PerMessageDeflate

from fastcluster.core.deflate import negotiate

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Seconds we wait for the peer's close frame after sending ours.
DEF CLOSE_TIMEOUT = 5.0
# Payloads this large are sent as their own object (by reference); smaller ones are copied with the head.
DEF DIRECT_PAYLOAD = 16384
# Messages shorter than this are sent uncompressed even when permessage-deflate is agreed (RFC 7692 lets
# each message choose): below a kilobyte the bytes saved rarely save a packet (the ws library's threshold).
DEF COMPRESS_FROM = 1024
# A compressed frame is unmasked this much at a time on its way to the inflater.
DEF INFLATE_PIECE = 16384


class HandshakeError(ValueError):
    """A request that asks for a WebSocket but cannot have one: status, extra header lines and message."""

    def __init__(self, status: int, message: str, headers: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def header_tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


def check_handshake(method: str, http11: bool, headers: list) -> bytes:
    """The Sec-WebSocket-Accept value for an upgrade request (headers: (name, value) pairs, any case), or
    HandshakeError: 426 for a version other than 13 or a request that does not ask to upgrade, 400 for a
    bad key."""
    upgrade = connection = key = version = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"upgrade":
            upgrade = value
        elif lowered == b"connection":
            connection = value if connection is None else connection + b"," + value
        elif lowered == b"sec-websocket-key":
            if key is not None:
                raise HandshakeError(400, "more than one Sec-WebSocket-Key")
            key = value
        elif lowered == b"sec-websocket-version":
            version = value
    if (upgrade is None or b"websocket" not in header_tokens(upgrade) or connection is None
            or b"upgrade" not in header_tokens(connection)):
        raise HandshakeError(426, "this resource is a WebSocket: upgrade to it",
                             b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
    if method != "GET" or not http11:
        raise HandshakeError(400, "a WebSocket handshake is an HTTP/1.1 GET")
    if version is None or version.strip() != b"13":
        raise HandshakeError(426, "WebSocket version 13 only", b"Sec-WebSocket-Version: 13\r\n")
    if key is None:
        raise HandshakeError(400, "no Sec-WebSocket-Key")
    key = key.strip()
    try:
        if len(b64decode(key, validate=True)) != 16:
            raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    except Base64Error:
        raise HandshakeError(400, "Sec-WebSocket-Key is not base64") from None
    return b64encode(sha1(key + GUID).digest())


def requested_subprotocols(headers: list) -> list[str]:
    """The Sec-WebSocket-Protocol values a client offers, in its order."""
    offered = []
    for name, value in headers:
        if name.lower() == b"sec-websocket-protocol":
            offered.extend(token.strip().decode("latin-1") for token in value.split(b",") if token.strip())
    return offered


def refusal(error: HandshakeError, bytes server_and_date) -> bytes:
    """The answer to a request that cannot become a WebSocket; the connection closes after it."""
    body = str(error).encode() + b"\n"
    return (b"HTTP/1.1 %d %s\r\n" % (error.status, b"Bad Request" if error.status == 400 else
                                     b"Upgrade Required")
            + server_and_date + error.headers
            + b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


def switching_protocols(bytes accept, bytes server_and_date, bytes extra=b"") -> bytes:
    return (b"HTTP/1.1 101 Switching Protocols\r\n" + server_and_date
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
            + extra + b"\r\n")


cdef bint valid_close_code(int code) noexcept:
    """Codes a peer may send (RFC 6455 7.4, the IANA registry): 1004-1006 and 1015 are never sent."""
    return (1000 <= code <= 1003 or 1007 <= code <= 1014) or 3000 <= code <= 4999


cdef bint utf8_feed(Utf8State *state, const uint8_t *data, Py_ssize_t length) noexcept nogil:
    """Check the next bytes of a UTF-8 text; False at the first byte that cannot be part of one. A text
    cut inside a character leaves state.need above 0."""
    cdef Py_ssize_t i = 0
    cdef uint8_t byte
    cdef uint64_t word
    while i < length:
        byte = data[i]
        if state.need == 0:
            if byte < 0x80:
                i += 1
                # ASCII runs eight bytes at a time
                while i + 8 <= length:
                    memcpy(&word, data + i, 8)
                    if word & 0x8080808080808080ULL:
                        break
                    i += 8
                continue
            state.low = 0x80
            state.high = 0xBF
            if 0xC2 <= byte <= 0xDF:
                state.need = 1
            elif 0xE0 <= byte <= 0xEF:
                state.need = 2
                if byte == 0xE0:
                    state.low = 0xA0  # overlong
                elif byte == 0xED:
                    state.high = 0x9F  # surrogates
            elif 0xF0 <= byte <= 0xF4:
                state.need = 3
                if byte == 0xF0:
                    state.low = 0x90  # overlong
                elif byte == 0xF4:
                    state.high = 0x8F  # past U+10FFFF
            else:
                return False
        else:
            if byte < state.low or byte > state.high:
                return False
            state.need -= 1
            state.low = 0x80
            state.high = 0xBF
        i += 1
    return True


cdef bint utf8_valid(const char *data, Py_ssize_t length) noexcept:
    cdef Utf8State state
    state.need = 0
    return utf8_feed(&state, <const uint8_t *>data, length) and state.need == 0


cdef inline void unmask(char *target, const char *source, Py_ssize_t length, const char *key) noexcept nogil:
    cdef uint64_t word, key8
    cdef Py_ssize_t i = 0
    memcpy(&key8, key, 4)
    memcpy((<char *>&key8) + 4, key, 4)
    while i + 8 <= length:
        memcpy(&word, source + i, 8)
        word ^= key8
        memcpy(target + i, &word, 8)
        i += 8
    while i < length:
        target[i] = source[i] ^ key[i & 3]
        i += 1


cdef class WebSocket(UpgradedProtocol):
    def __cinit__(self, Connection conn, *args):
        self.max_size = conn.ctx.ws_max_size
        self.ping_interval = conn.ctx.ws_ping_interval
        self.ping_timeout = conn.ctx.ws_ping_timeout
        self.last_input = conn.ctx.now
        self.close_code = 1006
        self.close_reason = ""
        self.deflate_allowed = conn.ctx.ws_per_message_deflate
        self.extensions = b""

    def __dealloc__(self):
        free(self.input)
        free(self.message)

    # ---- what a subclass does with the connection ----

    cdef int on_message(self, int opcode, bytes payload) except -1:
        """A complete text (OP_TEXT, valid UTF-8) or binary message."""
        return 0

    cdef int on_closed(self) except -1:
        """The WebSocket is closed (close_code says how); called once."""
        return 0

    cdef bint wants_more(self) noexcept:
        """False while the receiver holds too much: parsing waits for resume()."""
        return True

    # ---- the handshake ----

    cdef bytes negotiate(self, list headers):
        """Take permessage-deflate when the server allows it and the client offers it acceptably: the 101's
        Sec-WebSocket-Extensions line (b"" for none), also kept in `extensions`. HandshakeError(400) when
        the client's header does not parse."""
        if self.deflate_allowed:
            try:
                self.deflate = negotiate(headers)
            except ValueError as error:
                raise HandshakeError(400, f"Sec-WebSocket-Extensions: {error}") from None
            if self.deflate is not None:
                self.extensions = self.deflate.answer
        return self.extensions

    # ---- input ----

    cdef int data_received(self, const char *data, Py_ssize_t length) except -1:
        cdef Py_ssize_t used
        self.last_input = self.conn.ctx.now
        if self.close_received or self.conn.state != UPGRADED:
            return 0
        if self.input_length or self.holding:
            self.keep_input(data, length)
            if not self.holding:
                self.resume()
            return 0
        used = self.parse(data, length)
        if used < length and not self.close_received:
            self.keep_input(data + used, length - used)
        return 0

    cdef int keep_input(self, const char *data, Py_ssize_t length) except -1:
        grow(&self.input, &self.input_capacity, self.input_length + length)
        memcpy(self.input + self.input_length, data, length)
        self.input_length += length
        if self.holding and not self.conn.reading_paused:
            # The receiver is full: what came is kept (at most a read), and nothing more is read until it
            # takes some, so the peer's sends block once the kernel's buffers are full.
            self.conn.set_reading(False)
        return 0

    cdef int resume(self) except -1:
        """Parse the input kept back; reading resumes once it is all taken."""
        cdef Py_ssize_t used
        self.holding = False
        used = self.parse(self.input, self.input_length)
        if used:
            memmove(self.input, self.input + used, self.input_length - used)
            self.input_length -= used
        # (Once closing, the connection settles its interest after its flush: set_reading() would do it
        # before the frames just written are sent.)
        if not self.holding and self.conn.reading_paused and self.conn.state == UPGRADED:
            self.conn.set_reading(True)
        return 0

    cdef Py_ssize_t parse(self, const char *data, Py_ssize_t length) except -1:
        """Handle the complete frames at the start of data; returns how many bytes they took."""
        cdef Py_ssize_t position = 0, available, head, size
        cdef uint8_t first, second
        cdef int opcode
        cdef uint16_t size16
        cdef uint64_t size64
        cdef bint fin
        while position < length and not self.close_received and self.conn.state == UPGRADED:
            if not self.wants_more():
                self.holding = True
                break
            available = length - position
            if available < 2:
                break
            first = <uint8_t>data[position]
            second = <uint8_t>data[position + 1]
            fin = first & 0x80
            opcode = first & 0x0F
            if first & 0x70:  # reserved bits: only RSV1, on the first frame of a message, if compressing
                if (first & 0x70) != RSV1 or self.deflate is None or not (OP_TEXT <= opcode <= OP_BINARY):
                    return self.fail(1002) or length
            if opcode >= 8:
                if opcode > OP_PONG or not fin or (second & 0x7F) > 125:
                    return self.fail(1002) or length
            elif opcode > OP_BINARY:
                return self.fail(1002) or length
            elif (opcode == OP_CONTINUATION) != (self.message_opcode != 0):
                return self.fail(1002) or length  # a continuation of nothing, or a new message inside one
            if not second & 0x80:  # client frames must be masked
                return self.fail(1002) or length
            size = second & 0x7F
            head = 6
            if size == 126:
                if available < 4:
                    break
                memcpy(&size16, data + position + 2, 2)
                size = ((size16 & 0xFF) << 8) | (size16 >> 8)
                head = 8
            elif size == 127:
                if available < 10:
                    break
                size64 = 0
                for i in range(8):
                    size64 = (size64 << 8) | <uint8_t>data[position + 2 + i]
                if size64 >> 63:
                    return self.fail(1002) or length
                if size64 > <uint64_t>self.max_size:
                    return self.fail(1009) or length
                size = <Py_ssize_t>size64
                head = 14
            # (a compressed message's size is known only as it is inflated: deflate.pyx checks it then)
            if opcode < 8 and size + (self.message_length if opcode == OP_CONTINUATION and not self.compressed
                                      else 0) > self.max_size:
                return self.fail(1009) or length
            if available < head + size:
                break
            if first & RSV1:
                self.compressed = True
            self.frame_payload(opcode, fin, data + position + head, size, data + position + head - 4)
            position += head + size
        return position

    cdef int frame_payload(self, int opcode, bint fin, const char *masked, Py_ssize_t size,
                           const char *key) except -1:
        cdef char control_payload[125]
        cdef bytes payload
        if opcode >= 8:
            unmask(control_payload, masked, size, key)
            return self.control(opcode, control_payload, size)
        if self.compressed:
            return self.inflate_frame(opcode, fin, masked, size, key)
        if fin and opcode != OP_CONTINUATION:  # a whole message in one frame: unmasked into its bytes
            payload = PyBytes_FromStringAndSize(NULL, size)
            unmask(PyBytes_AS_STRING(payload), masked, size, key)
            return self.whole(opcode, payload)
        grow(&self.message, &self.message_capacity, self.message_length + size)
        unmask(self.message + self.message_length, masked, size, key)
        return self.frame(opcode, fin, self.message + self.message_length, size)

    cdef int inflate_frame(self, int opcode, bint fin, const char *masked, Py_ssize_t size,
                           const char *key) except -1:
        """A frame of a compressed message: unmasked a piece at a time and inflated onto the end of the
        message buffer, then taken as an uncompressed fragment would be."""
        cdef char piece[INFLATE_PIECE]
        cdef Py_ssize_t done = 0, length, end = self.message_length
        cdef int code = 0
        while done < size and not code:  # (pieces of a multiple of 4 bytes keep the mask key's phase)
            length = min(size - done, INFLATE_PIECE)
            unmask(piece, masked + done, length, key)
            code = self.deflate.decompress(piece, length, &self.message, &self.message_capacity, &end,
                                           self.max_size)
            done += length
        if fin and not code:
            code = self.deflate.end_message(&self.message, &self.message_capacity, &end, self.max_size)
            self.compressed = False
        if code:
            return self.fail(code)
        return self.frame(opcode, fin, self.message + self.message_length, end - self.message_length)

    cdef int whole(self, int opcode, bytes payload) except -1:
        if self.close_sent:
            return 0  # closing: data is dropped
        if opcode == OP_TEXT and not utf8_valid(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload)):
            return self.fail(1007)
        self.conn.ctx.stats.websocket_messages += 1
        return self.on_message(opcode, payload)

    cdef int frame(self, int opcode, bint fin, const char *payload, Py_ssize_t length) except -1:
        """A fragment, already unmasked at the end of the message buffer."""
        if opcode != OP_CONTINUATION:
            self.message_opcode = opcode
            self.utf8.need = 0
        self.message_length += length
        if self.message_opcode == OP_TEXT and not utf8_feed(&self.utf8, <const uint8_t *>payload, length):
            return self.fail(1007)  # fails at the fragment where the text breaks, not at the end
        if not fin:
            return 0
        opcode = self.message_opcode
        self.message_opcode = 0
        message = PyBytes_FromStringAndSize(self.message, self.message_length)
        self.message_length = 0
        if self.message_capacity > 65536:  # a large message's buffer is not kept for the next
            free(self.message)
            self.message = NULL
            self.message_capacity = 0
        if opcode == OP_TEXT and self.utf8.need:
            return self.fail(1007)
        if self.close_sent:
            return 0
        self.conn.ctx.stats.websocket_messages += 1
        return self.on_message(opcode, message)

    cdef int control(self, int opcode, const char *payload, Py_ssize_t length) except -1:
        cdef int code
        if opcode == OP_PING:
            if not self.close_sent:
                self.send_frame(OP_PONG, payload, length)
            return 0
        if opcode == OP_PONG:
            self.ping_sent_at = 0
            return 0
        # a close frame: no code, or a valid code and a UTF-8 reason
        self.close_received = True
        if length == 1:
            return self.fail(1002)
        code = 1005
        if length >= 2:
            code = (<uint8_t>payload[0] << 8) | <uint8_t>payload[1]
            if not valid_close_code(code):
                self.close_received = False
                return self.fail(1002)
            if not utf8_valid(payload + 2, length - 2):
                self.close_received = False
                return self.fail(1007)
        if not self.close_sent:
            self.close_code = code
            self.close_reason = payload[2:length].decode("utf-8") if length > 2 else ""
            # the peer's code echoed back (RFC 6455 5.5.1); no code for none
            self.send_frame(OP_CLOSE, payload, 2 if length >= 2 else 0)
            self.close_sent = True
        # The server closes the TCP connection first (RFC 6455 7.1.1): its FIN now, then the peer's EOF.
        self.conn.end_upgraded(True)
        return self.ended()

    cdef int opened(self) except -1:
        """The handshake is accepted: the WebSocket counts as open."""
        if not self.counted:
            self.counted = True
            self.conn.ctx.stats.websockets_open += 1
        return 0

    cdef int ended(self) except -1:
        if self.reported:
            return 0
        self.reported = True
        if self.counted:
            self.conn.ctx.stats.websockets_open -= 1
        return self.on_closed()

    # ---- output ----

    cdef int send_frame(self, int opcode, const char *data, Py_ssize_t length) except -1:
        """One final frame, unmasked (servers do not mask), written behind everything before it (opcode:
        with RSV1 for a compressed message)."""
        self.send_head(opcode, length)
        if length:
            self.conn.write_bytes(data, length)
        return 0

    cdef int send_head(self, int opcode, Py_ssize_t length) except -1:
        cdef char head[10]
        cdef Py_ssize_t head_length = 2
        cdef int i
        head[0] = <char>(0x80 | opcode)
        if length < 126:
            head[1] = <char>length
        elif length < 65536:
            head[1] = 126
            head[2] = <char>(length >> 8)
            head[3] = <char>(length & 0xFF)
            head_length = 4
        else:
            head[1] = 127
            for i in range(8):
                head[2 + i] = <char>((<uint64_t>length >> (56 - 8 * i)) & 0xFF)
            head_length = 10
        return self.conn.write_bytes(head, head_length)

    cpdef int send_message(self, bint text, bytes payload) except -1:
        """Send a message (written; it leaves with the connection's next flush), compressed if agreed."""
        cdef Py_ssize_t length = PyBytes_GET_SIZE(payload)
        cdef int first = OP_TEXT if text else OP_BINARY
        if self.close_sent or self.conn is None or self.conn.fd < 0:
            return 0
        self.conn.ctx.stats.websocket_messages += 1
        if self.deflate is not None and length >= COMPRESS_FROM:
            payload = self.deflate.compress(PyBytes_AS_STRING(payload), length)
            length = PyBytes_GET_SIZE(payload)
            first |= RSV1
        if length < DIRECT_PAYLOAD:
            return self.send_frame(first, PyBytes_AS_STRING(payload), length)
        self.send_head(first, length)
        return self.conn.write(payload)

    cpdef int close(self, int code=1000, bytes reason=b"") except -1:
        """Begin the closing handshake: our close frame now, the connection closed when the peer's comes
        (or after CLOSE_TIMEOUT)."""
        cdef char payload[125]
        if self.close_sent or self.conn is None or self.conn.fd < 0:
            return 0
        reason = reason[:123]
        payload[0] = <char>(code >> 8)
        payload[1] = <char>(code & 0xFF)
        memcpy(payload + 2, PyBytes_AS_STRING(reason), PyBytes_GET_SIZE(reason))
        self.send_frame(OP_CLOSE, payload, 2 + PyBytes_GET_SIZE(reason))
        self.close_sent = True
        self.close_code = code
        self.close_deadline = self.conn.ctx.now + CLOSE_TIMEOUT
        return 0

    cdef int fail(self, int code) except -1:
        """The peer broke the protocol (or a limit): close with code and stop reading its frames."""
        self.close(code)
        self.close_code = code
        self.close_received = True  # nothing more is parsed
        self.conn.end_upgraded(True)  # linger: the peer may still be sending
        self.ended()
        return 0

    # ---- the connection's calls ----

    cdef int drained(self) except -1:
        return 0

    cdef int on_tick(self, double now) except -1:
        if self.close_sent:
            if now >= self.close_deadline:
                self.conn.end_upgraded(False)
                self.ended()
            return 0
        if self.ping_interval <= 0:
            return 0
        if self.holding:  # reading waits for the receiver, not for the peer: no keep-alive meanwhile
            self.last_input = now
            return 0
        if self.ping_sent_at:
            if now - self.ping_sent_at >= self.ping_timeout:
                self.close(1011, b"keepalive ping timeout")
                self.conn.end_upgraded(False)
                self.ended()
        elif now - self.last_input >= self.ping_interval:
            self.send_frame(OP_PING, NULL, 0)
            self.ping_sent_at = now
        return 0

    cdef int going_away(self) except -1:
        self.close(1001)
        self.ended()
        return 0

    cdef int connection_lost(self) except -1:
        self.ended()
        free(self.input)
        free(self.message)
        self.input = self.message = NULL
        self.input_length = self.input_capacity = self.message_length = self.message_capacity = 0
        return 0
