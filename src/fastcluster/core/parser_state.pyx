# Finds the llhttp state of an httptools HttpRequestParser: httptools keeps it behind the first field of its
# object, after the object header and the Cython vtable pointer. At import we check that guess against
# httptools' public API on real requests; if anything disagrees, state_of() returns NULL and every caller
# falls back to the Python methods, so a different httptools build costs speed, never correctness.
# FASTCLUSTER_PARSER_API=1 forces that fallback (the tests run both ways).
# It also finds httptools' on_url callback among llhttp's settings, so the connection can see where the
# request target lies in the input (to check the request line's spaces and protocol; see hook_on_url).
import os

from cpython.ref cimport PyObject

from httptools import HttpRequestParser

cdef Py_ssize_t STATE_OFFSET = sizeof(PyObject) + sizeof(void *)
cdef bint LAYOUT_OK = False
# The settings' first pointers, where every llhttp version keeps on_url (its place among them varies).
DEF SETTINGS_SCANNED = 8
cdef Py_ssize_t URL_SLOT = -1
cdef span_callback HTTPTOOLS_ON_URL = NULL
cdef bytes probe_seen = None
# on_chunk_extension_name, then _value: six and seven places after on_url in llhttp 9's settings.
cdef Py_ssize_t EXTENSION_SLOT = -1
cdef bytes probe_extension = b""
# llhttp's number for the state right after a chunk extension's ";", and the reasons it gives when a space or
# a tab comes there (see resume_after_extension_space); found and checked at import.
cdef void *AFTER_SEMICOLON = NULL
cdef const char *SPACE_REASON = NULL
cdef const char *TAB_REASON = NULL
# How far past the refused byte llhttp's error position is for each (it consumes a byte it matched).
cdef Py_ssize_t SPACE_SHIFT = 0, TAB_SHIFT = 0
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


cdef llhttp_state *candidate(object parser) noexcept:
    cdef llhttp_state *state = (<llhttp_state **>(<char *><PyObject *>parser + STATE_OFFSET))[0]
    if state == NULL or <size_t>state % sizeof(void *) != 0 or state.data != <void *>parser:
        return NULL
    return state


cdef llhttp_state *state_of(object parser) noexcept:
    return candidate(parser) if LAYOUT_OK else NULL


class _Probe:
    def __init__(self):
        self.seen = []
        self.parser = HttpRequestParser(self)

    def on_headers_complete(self):
        self.check()

    def on_message_complete(self):
        self.check()

    def check(self):
        cdef llhttp_state *state = candidate(self.parser)
        if state == NULL:
            self.seen.append(False)
            return
        version = self.parser.get_http_version()
        self.seen.append(
            f"{state.http_major}.{state.http_minor}" == version
            and (state.method == METHOD_HEAD) == (self.parser.get_method() == b"HEAD")
            and state_keeps_alive(state) == self.parser.should_keep_alive()
        )


def probe_layout() -> bool:
    """True when the llhttp state read through the object layout agrees with httptools on sample requests."""
    probe = _Probe()
    try:
        for request in (b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"):
            probe = _Probe()
            probe.parser.feed_data(request)
            if len(probe.seen) != 2 or not all(probe.seen):
                return False
        probe = _Probe()
        probe.parser.feed_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                               b"GET / HTTP/1.0\r\n\r\n")
        return len(probe.seen) == 4 and all(probe.seen)
    except Exception:
        return False


class _NoUrl:
    pass


class _WithUrl:
    def __init__(self):
        self.urls = []

    def on_url(self, url):
        self.urls.append(url)


cdef Py_ssize_t find_url_slot():
    """The settings pointer httptools sets only for a protocol with on_url; -1 unless exactly one."""
    bare = HttpRequestParser(_NoUrl())
    with_url = HttpRequestParser(_WithUrl())
    cdef llhttp_state *without = candidate(bare)
    cdef llhttp_state *state = candidate(with_url)
    cdef Py_ssize_t slot = -1, i
    if without == NULL or state == NULL:
        return -1
    for i in range(SETTINGS_SCANNED):
        if (<void **>without.settings)[i] != (<void **>state.settings)[i]:
            if slot >= 0 or (<void **>without.settings)[i] != NULL:
                return -1
            slot = i
    return slot


cdef int probe_hook(llhttp_state *state, const char *at, size_t length) noexcept:
    global probe_seen
    probe_seen = at[:length]
    return parser_on_url(state, at, length)


cdef bint probe_url_hook():
    """True when a hook put in the on_url place sees the target and httptools' callback still gets it."""
    global URL_SLOT, HTTPTOOLS_ON_URL, probe_seen
    URL_SLOT = find_url_slot()
    if URL_SLOT < 0:
        return False
    protocol = _WithUrl()
    parser = HttpRequestParser(protocol)
    cdef llhttp_state *state = candidate(parser)
    HTTPTOOLS_ON_URL = <span_callback>(<void **>state.settings)[URL_SLOT]
    hook_on_url(state, probe_hook)
    try:
        parser.feed_data(b"GET /probe?x HTTP/1.1\r\nHost: a\r\n\r\n")
    except Exception:
        return False
    return probe_seen == b"/probe?x" and protocol.urls == [b"/probe?x"]


class _WithHeaders(_WithUrl):
    def on_header(self, name, value):
        pass


cdef int probe_extension_part(llhttp_state *state, const char *at, size_t length) noexcept:
    global probe_extension
    probe_extension += b"|" + at[:length]
    return 0


cdef bint probe_extension_slots():
    """True when the places guessed for the chunk extension callbacks are right: the two before them are the
    header callbacks httptools sets for on_header only, theirs are unset, and hooks put there see a chunk
    extension's name and value."""
    global EXTENSION_SLOT, probe_extension
    cdef Py_ssize_t slot = URL_SLOT + 6
    bare = HttpRequestParser(_WithUrl())
    parser = HttpRequestParser(_WithHeaders())
    cdef void **without = <void **>candidate(bare).settings
    cdef void **settings = <void **>candidate(parser).settings
    if (without[slot - 2] != NULL or without[slot - 1] != NULL or settings[slot - 2] == NULL
            or settings[slot - 1] == NULL or settings[slot] != NULL or settings[slot + 1] != NULL):
        return False
    EXTENSION_SLOT = slot
    hook_chunk_extensions(candidate(parser), probe_extension_part, probe_extension_part)
    probe_extension = b""
    try:
        parser.feed_data(CHUNKED_HEAD + b"1;ab=cd\r\nx\r\n0\r\n\r\n")
    except Exception:
        pass
    if probe_extension != b"|ab|cd":
        EXTENSION_SLOT = -1
    return EXTENSION_SLOT >= 0


cdef bint hook_chunk_extensions(llhttp_state *state, span_callback name, span_callback value) noexcept:
    if EXTENSION_SLOT < 0:
        return False
    (<void **>state.settings)[EXTENSION_SLOT] = <void *>name
    (<void **>state.settings)[EXTENSION_SLOT + 1] = <void *>value
    return True


cdef bint hook_on_url(llhttp_state *state, span_callback hook) noexcept:
    if URL_SLOT < 0 or HTTPTOOLS_ON_URL == NULL:
        return False
    (<void **>state.settings)[URL_SLOT] = <void *>hook
    return True


cdef int parser_on_url(llhttp_state *state, const char *at, size_t length) noexcept:
    return HTTPTOOLS_ON_URL(state, at, length)


cdef const char *resume_after_extension_space(llhttp_state *state, const char *start, const char *end,
                                              char before) noexcept:
    """After llhttp failed on [start, end): when what it refused is whitespace right after a chunk
    extension's ";" (BWS, which RFC 9112 §7.1.1 allows and llhttp has no leniency for), put the parser back
    in the state it had after the ";" and return the first byte past the whitespace (end when it runs to the
    end), from which the caller feeds on; NULL for any other failure. `before` is the byte fed before start.

    Only this one refusal is undone: the error must be the one llhttp gives in a chunked body for a space or
    a tab in that exact place, so nothing else it refuses is ever read differently."""
    cdef const char *at = state.error_pos
    if AFTER_SEMICOLON == NULL or at == NULL or not (state.flags & F_CHUNKED) or (state.flags & F_TRAILING):
        return NULL
    if state.reason == SPACE_REASON:
        at -= SPACE_SHIFT
        if at < start or at >= end or at[0] != c' ':
            return NULL
    elif state.reason == TAB_REASON:
        at -= TAB_SHIFT
        if at < start or at >= end or at[0] != c'\t':
            return NULL
    else:
        return NULL
    if (at[-1] if at > start else before) != c';':
        return NULL
    while at < end and (at[0] == c' ' or at[0] == c'\t'):
        at += 1
    state.error = 0
    state.reason = NULL
    state.error_pos = NULL
    state._span_pos0 = NULL  # a tab had begun the name's span; the state after ";" has none open
    state._current = AFTER_SEMICOLON
    return at


class _Body:
    def __init__(self):
        self.body = b""
        self.complete = False

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.complete = True


cdef Py_ssize_t whitespace_shift(bytes data, const char **reason):
    """Feed data, which ends in a byte llhttp refuses, to a new parser: how far past that byte llhttp's error
    position lies (0 or 1: a byte it matched is consumed), or -1; and the error's reason."""
    parser = HttpRequestParser(_Body())
    try:
        parser.feed_data(data)
    except Exception:
        pass
    cdef llhttp_state *state = candidate(parser)
    if state.error == 0 or state.error_pos == NULL:
        return -1
    cdef Py_ssize_t shift = state.error_pos - (<const char *>data + len(data) - 1)
    reason[0] = state.reason
    return shift if 0 <= shift <= 1 else -1


cdef bint probe_extension_space():
    """Learn the state after a chunk extension's ";" and llhttp's reasons for whitespace there, then check
    that resume_after_extension_space lets `5; a=b` and `5;\t a=b` through, sent whole and split around the
    whitespace, with the body, the extension's name and value and the end of the message intact."""
    global AFTER_SEMICOLON, SPACE_REASON, TAB_REASON, SPACE_SHIFT, TAB_SHIFT, probe_extension
    parser = HttpRequestParser(_Body())
    parser.feed_data(CHUNKED_HEAD + b"5;")
    cdef llhttp_state *state = candidate(parser)
    cdef const char *data
    cdef const char *end
    cdef const char *at
    cdef Py_ssize_t cut
    cdef char before
    AFTER_SEMICOLON = state._current
    SPACE_SHIFT = whitespace_shift(CHUNKED_HEAD + b"5; ", &SPACE_REASON)
    TAB_SHIFT = whitespace_shift(CHUNKED_HEAD + b"5;\t", &TAB_REASON)
    if SPACE_SHIFT < 0 or TAB_SHIFT < 0 or SPACE_REASON == TAB_REASON:
        return False
    for chunk in (b"5; a=b\r\nhello\r\n0\r\n\r\n", b"5;\t a=b\r\nhello\r\n0\r\n\r\n"):
        for cut in range(len(chunk)):
            protocol = _Body()
            parser = HttpRequestParser(protocol)
            state = candidate(parser)
            hook_chunk_extensions(state, probe_extension_part, probe_extension_part)
            probe_extension = b""
            before = 0
            for piece in (CHUNKED_HEAD + chunk[:cut], chunk[cut:]):
                data = piece
                end = data + len(piece)
                at = data
                while at < end:
                    try:
                        parser.feed_data(memoryview(piece)[at - data:])
                        before = data[len(piece) - 1]
                        break
                    except Exception:
                        at = resume_after_extension_space(state, at, end, before)
                        if at == NULL:
                            return False
                        before = c';'
            # (the hooks see a name or value cut by the split in two pieces)
            if protocol.body != b"hello" or not protocol.complete or probe_extension.replace(b"|", b"") != b"ab":
                return False
    return True


LAYOUT_OK = os.environ.get("FASTCLUSTER_PARSER_API") != "1" and probe_layout()
if not (LAYOUT_OK and probe_url_hook()):
    URL_SLOT = -1
elif not probe_extension_slots():
    EXTENSION_SLOT = -1
try:
    if not (EXTENSION_SLOT >= 0 and probe_extension_space()):
        AFTER_SEMICOLON = NULL
except Exception:  # another llhttp that refuses the probe's own input: whitespace there stays refused
    AFTER_SEMICOLON = NULL


def layout_ok() -> bool:
    return LAYOUT_OK


def extensions_hooked() -> bool:
    """True when empty chunk extension names and values are refused."""
    return EXTENSION_SLOT >= 0


def extension_space_allowed() -> bool:
    """True when whitespace after a chunk extension's ";" is taken (`5; a=b`), as RFC 9112 allows."""
    return AFTER_SEMICOLON != NULL


def url_hooked() -> bool:
    """True when connections see where the request target lies (the request line's strict checks run)."""
    return URL_SLOT >= 0
