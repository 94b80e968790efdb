from fastcluster.core.routes cimport Shape
from fastcluster.core.static cimport OpenFile


cdef bytes status_line(int status)


cdef class Plan:
    cdef:
        int status
        bint close
        int kind
        bytes whole
        bytes head
        long long size
        long long count
        double delay
        double duration
        bint chunked


cdef class Responder:
    cdef:
        bytes server_line
        bytes date_line
        bytes status_line
        bytes content_type
        bytes extra_headers
        bytes body
        # A large body, in memory the kernel sends from without copying (None for a small one).
        OpenFile body_file
        # Prebuilt answers, rebuilt once a second with the new Date, indexed by keep_alive * 2 + head.
        list fixed
        list json
        dict errors
        # Shaped answers by (url, control header, head, keep_alive), least recently used first.
        dict plans
        Py_ssize_t plan_bytes
        readonly bytes date
        # The largest answer one request can get: bounds how much output one read can produce.
        readonly Py_ssize_t max_answer
        # The status of the answer answer() returned last (for the stats and the access log).
        readonly int answered_status
        int status
        # Whether the answer respond() returned last asks for the connection to close (close=1).
        readonly bint answered_close

    cdef bytes build(self, bytes status, bytes content_type, bytes extra, bytes body, bint keep_alive,
                     bint head)
    cdef object answer(self, bytes url, bint head, bint keep_alive)
    cdef bytes error(self, int status, bint head)
    cdef object respond(self, bytes url, int route, bytes control, list headers, list body, bint head,
                        bint keep_alive, bint http10, double now)
    cdef int remember(self, tuple key, Plan plan) except -1
    cdef object start(self, Plan plan, double now)
    cdef Plan plan(self, Shape shape, list headers, list body, bint head, bint keep_alive, bint http10)
    cpdef refresh(self, double wall_time)
