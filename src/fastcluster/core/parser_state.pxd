# Access to the llhttp state inside an httptools parser, to learn a request's version, method and keep-alive
# flags without three Python calls and a string format per request. The one field written is `upgrade`
# (cleared in on_headers_complete, so that the body of an Upgrade we do not offer is parsed as a body).
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint64_t


# The layout of llhttp's `llhttp__internal_s` (llhttp.h, unchanged from llhttp 6 to 9). Used only after
# probe_layout() has checked it against httptools' own answers; otherwise callers use the Python API.
ctypedef struct llhttp_state:
    int32_t _index
    void *_span_pos0
    void *_span_cb0
    int32_t error
    const char *reason
    const char *error_pos
    void *data
    void *_current
    uint64_t content_length
    uint8_t type
    uint8_t method
    uint8_t http_major
    uint8_t http_minor
    uint8_t header_state
    uint16_t lenient_flags
    uint8_t upgrade
    uint8_t finish
    uint16_t flags
    uint16_t status_code
    uint8_t initial_message_completed
    void *settings


cdef enum:
    METHOD_HEAD = 2
    METHOD_CONNECT = 5
    F_CONNECTION_KEEP_ALIVE = 0x1
    F_CONNECTION_CLOSE = 0x2


cdef llhttp_state *state_of(object parser) noexcept


cdef inline bint state_keeps_alive(llhttp_state *state) noexcept:
    """llhttp_should_keep_alive() for a request, read during on_message_complete."""
    if state.http_major > 0 and state.http_minor > 0:
        return not (state.flags & F_CONNECTION_CLOSE)
    return (state.flags & F_CONNECTION_KEEP_ALIVE) != 0
