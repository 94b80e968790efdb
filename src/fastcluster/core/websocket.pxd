from libc.stdint cimport uint8_t

from fastcluster.core.connection cimport UpgradedProtocol
from fastcluster.core.deflate cimport PerMessageDeflate


cdef enum Opcode:
    OP_CONTINUATION = 0
    OP_TEXT = 1
    OP_BINARY = 2
    OP_CLOSE = 8
    OP_PING = 9
    OP_PONG = 10


cdef enum:
    # The reserved bit of a frame's first byte that permessage-deflate sets on a compressed message's first
    # frame (RFC 7692 6).
    RSV1 = 0x40


cdef struct Utf8State:
    # Continuation bytes still expected, and the range the next one must be in (overlongs, surrogates and
    # code points past U+10FFFF are ruled out by the range after the lead byte).
    int need
    uint8_t low
    uint8_t high


cdef bint valid_close_code(int code) noexcept
cdef bint utf8_feed(Utf8State *state, const uint8_t *data, Py_ssize_t length) noexcept nogil


cdef class WebSocket(UpgradedProtocol):
    cdef:
        Py_ssize_t max_size
        double ping_interval
        double ping_timeout
        # Input not parsed yet: the start of a frame, or frames held back while the receiver is full.
        char *input
        Py_ssize_t input_length
        Py_ssize_t input_capacity
        # The fragmented message being assembled (message_opcode 0: none).
        char *message
        Py_ssize_t message_length
        Py_ssize_t message_capacity
        int message_opcode
        Utf8State utf8
        bint close_sent
        bint close_received
        # on_closed() has been called.
        bint reported
        # Parsing waits (the receiver holds too much); drained() resumes it.
        bint holding
        # The close code the peer sent, or the one we failed the connection with (1006 until either).
        readonly int close_code
        readonly object close_reason
        double last_input
        double ping_sent_at
        double close_deadline
        # Counted in the stats' open WebSockets.
        bint counted
        # permessage-deflate: allowed (--ws-per-message-deflate), agreed in the handshake (None: not), the
        # 101's Sec-WebSocket-Extensions line (b"" for none), and whether the message being received is
        # compressed.
        bint deflate_allowed
        PerMessageDeflate deflate
        readonly bytes extensions
        bint compressed

    cdef int on_message(self, int opcode, bytes payload) except -1
    cdef int on_closed(self) except -1
    cdef bint wants_more(self) noexcept
    cdef Py_ssize_t parse(self, const char *data, Py_ssize_t length) except -1
    cdef bytes negotiate(self, list headers)
    cdef int frame_payload(self, int opcode, bint fin, const char *masked, Py_ssize_t size,
                           const char *key) except -1
    cdef int inflate_frame(self, int opcode, bint fin, const char *masked, Py_ssize_t size,
                           const char *key) except -1
    cdef int whole(self, int opcode, bytes payload) except -1
    cdef int frame(self, int opcode, bint fin, const char *payload, Py_ssize_t length) except -1
    cdef int opened(self) except -1
    cdef int ended(self) except -1
    cdef int control(self, int opcode, const char *payload, Py_ssize_t length) except -1
    cdef int keep_input(self, const char *data, Py_ssize_t length) except -1
    cdef int resume(self) except -1
    cdef int send_frame(self, int opcode, const char *data, Py_ssize_t length) except -1
    cdef int send_head(self, int opcode, Py_ssize_t length) except -1
    cpdef int send_message(self, bint text, bytes payload) except -1
    cpdef int close(self, int code=*, bytes reason=*) except -1
    cdef int fail(self, int code) except -1
