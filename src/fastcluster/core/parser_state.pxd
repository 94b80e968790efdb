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
    METHOD_OPTIONS = 6
    # SOURCE is the Icecast method llhttp accepts for ICE/1.0; DESCRIBE..FLUSH are RTSP's.
    METHOD_SOURCE = 33
    METHOD_RTSP_FIRST = 35
    METHOD_RTSP_LAST = 45
    # llhttp's error code for "a callback refused the input".
    ERROR_USER = 24
    F_CONNECTION_KEEP_ALIVE = 0x1
    F_CONNECTION_CLOSE = 0x2
    F_CHUNKED = 0x8
    F_TRAILING = 0x80


# llhttp's callback for a span of the input (on_url): the span's first byte and its length.
ctypedef int (*span_callback)(llhttp_state *state, const char *at, size_t length) noexcept

cdef llhttp_state *state_of(object parser) noexcept
# Puts hook in place of httptools' on_url callback for this parser (the hook calls parser_on_url after its
# checks); False when the callback's place in the settings was not found (then nothing is changed).
cdef bint hook_on_url(llhttp_state *state, span_callback hook) noexcept
cdef int parser_on_url(llhttp_state *state, const char *at, size_t length) noexcept
# Sets llhttp's on_chunk_extension_name and _value callbacks (httptools leaves them unset) for this parser;
# False when their place in the settings was not confirmed.
cdef bint hook_chunk_extensions(llhttp_state *state, span_callback name, span_callback value) noexcept
# After a failed feed of [start, end): when llhttp refused whitespace right after a chunk extension's ";", the
# parser is put back after the ";" and the first byte past the whitespace is returned; otherwise NULL.
cdef const char *resume_after_extension_space(llhttp_state *state, const char *start, const char *end,
                                              char before) noexcept


cdef inline bint state_keeps_alive(llhttp_state *state) noexcept:
    """llhttp_should_keep_alive() for a request, read during on_message_complete."""
    if state.http_major > 0 and state.http_minor > 0:
        return not (state.flags & F_CONNECTION_CLOSE)
    return (state.flags & F_CONNECTION_KEEP_ALIVE) != 0
