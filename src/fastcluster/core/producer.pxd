cdef class Producer:
    """An answer produced piece by piece (large bodies, delays, streams): the connection asks for the next
    piece whenever its unsent output falls under the limit, or when ready_at has come."""
    cdef:
        readonly double ready_at
        # The bytes of the whole answer as far as known in advance (for the access log).
        readonly long long total

    cdef object next_piece(self, double now)
