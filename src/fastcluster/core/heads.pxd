# Response heads for apps' answers: the headers an app hands us, checked, and their framing.
from fastcluster.core.responder cimport Responder


cdef class Head:
    cdef:
        readonly int status
        bytes status_line
        # The app's header lines, checked and joined, less the framing headers we write ourselves.
        bytes lines
        # The Content-Length the app gave (-1: none).
        readonly long long length


cdef Head asgi_head(object status, object headers)
cdef Head wsgi_head(object status, object headers)
cdef bint bodiless(int status) noexcept
cdef bytes frame(Head head, Responder responder, long long length, bint chunked, bint keep_alive, bytes body)
cdef bytes error_answer(Responder responder, int status, bint keep_alive, bint head_only)
cdef bytes chunk(bytes data)
cdef bytes body_bytes(object piece)
