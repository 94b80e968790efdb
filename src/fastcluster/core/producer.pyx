# The interface between a connection and an answer too large or too slow to be one bytes object.


cdef class Producer:
    def __cinit__(self):
        self.file_fd = -1

    cdef object next_piece(self, double now):
        """The next bytes to send; b"" when nothing is due before ready_at; None when the answer is complete."""
        return None
