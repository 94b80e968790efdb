from fastcluster.core.producer cimport Producer


cdef enum Route:
    ROUTE_FIXED     # the configured answer (`/` and every path that is not a built-in route)
    ROUTE_JSON      # `/json` as it is
    ROUTE_SHAPED    # a built-in path with query controls, or any request with the control header
    ROUTE_HEADERS   # `/headers`: the answer needs the request headers
    ROUTE_ECHO      # `/echo`: the answer needs the request headers and body
    ROUTE_WEBSOCKET # `/ws`: a WebSocket echo (core/websocket.pyx) when the request asks to upgrade


cdef enum Kind:
    KIND_HELLO
    KIND_JSON
    KIND_STATUS
    KIND_BYTES
    KIND_ECHO
    KIND_HEADERS
    KIND_STREAM
    KIND_DRIP


cdef Route route_of(bytes url) noexcept
cdef Py_ssize_t path_start(const char *url, Py_ssize_t length) noexcept


cdef class Shape:
    cdef:
        public int kind
        public int status         # -1: the kind's own
        public long long size     # -1: the kind's own body
        public long long count    # /stream chunks, /drip bytes
        public double delay       # seconds before the answer begins
        public double duration    # /drip: seconds the body is spread over
        public bint chunked
        public bint close
        public list headers       # (name, value) bytes pairs added to the answer


cdef class Whole(Producer):
    pass


cdef class Pattern(Producer):
    cdef long long remaining
    cdef bint chunked


cdef class Stream(Producer):
    cdef bint framed
    cdef long long count
    cdef long long sent


cdef class Drip(Producer):
    cdef long long count
    cdef long long sent
    cdef double start
    cdef double pause
