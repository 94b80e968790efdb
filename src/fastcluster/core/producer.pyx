# The interface between a connection and an answer too large or too slow to be one bytes object.

from cpython.bytes cimport PyBytes_GET_SIZE


cdef class Producer:
    def __cinit__(self):
        self.file_fd = -1

    cdef object next_piece(self, double now):
        """The next bytes to send; b"" when nothing is due before ready_at; None when the answer is complete."""
        if now < self.ready_at:
            return b""
        if self.head is not None:
            head = self.head
            self.head = None
            self.file_due = self.file_fd >= 0  # a file part follows its head
            return head
        return self.body_piece(now)

    cdef object body_piece(self, double now):
        """What follows the head (the head was all: None)."""
        return None


cdef Py_ssize_t body_length(bytes answer):
    """The body bytes of a whole answer (head and body in one bytes), for the access log."""
    return PyBytes_GET_SIZE(answer) - answer.find(b"\r\n\r\n") - 4
