cdef class Producer:
    """An answer produced piece by piece (large bodies, delays, streams, files): the connection asks for the
    next piece whenever its unsent output falls under the limit, or when ready_at has come."""
    cdef:
        # Sent first, once ready_at has come (None once sent): the head, or the whole of a small answer.
        bytes head
        readonly double ready_at
        # The body bytes of the answer as far as known in advance (for the access log).
        readonly long long total
        # A file part the connection sends with sendfile once file_due is set (file_fd -1: none): the
        # bytes [file_offset, file_end) of file_fd, sent after every piece before it.
        int file_fd
        bint file_due
        long long file_offset
        long long file_end

    cdef object next_piece(self, double now)
    cdef object body_piece(self, double now)


cdef Py_ssize_t body_length(bytes answer)
