# Finds the llhttp state of an httptools HttpRequestParser: httptools keeps it behind the first field of its
# object, after the object header and the Cython vtable pointer. At import we check that guess against
# httptools' public API on real requests; if anything disagrees, state_of() returns NULL and every caller
# falls back to the Python methods, so a different httptools build costs speed, never correctness.
# FASTCLUSTER_PARSER_API=1 forces that fallback (the tests run both ways).
import os

from cpython.ref cimport PyObject

from httptools import HttpRequestParser

cdef Py_ssize_t STATE_OFFSET = sizeof(PyObject) + sizeof(void *)
cdef bint LAYOUT_OK = False


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


LAYOUT_OK = os.environ.get("FASTCLUSTER_PARSER_API") != "1" and probe_layout()


def layout_ok() -> bool:
    return LAYOUT_OK
