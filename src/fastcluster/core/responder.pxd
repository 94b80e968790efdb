cdef class Responder:
    cdef:
        bytes server_line
        bytes date_line
        bytes status_line
        bytes content_type
        bytes extra_headers
        bytes body
        # Prebuilt answers, rebuilt once a second with the new Date, indexed by keep_alive * 2 + head.
        list fixed
        list json
        dict errors
        readonly bytes date
        # The largest answer one request can get: bounds how much output one read can produce.
        readonly Py_ssize_t max_answer
        # The status of the answer answer() returned last (for the stats and the access log).
        readonly int answered_status
        int status

    cdef bytes build(self, bytes status, bytes content_type, bytes extra, bytes body, bint keep_alive,
                     bint head)
    cdef bytes answer(self, bytes url, bint head, bint keep_alive)
    cdef bytes error(self, int status)
    cpdef refresh(self, double wall_time)
