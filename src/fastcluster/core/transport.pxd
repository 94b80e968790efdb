from libc.stdint cimport uint32_t

from fastcluster.core.syscalls cimport iovec


cdef class Transport:
    """How a connection's bytes reach its socket. This base is the plain socket (the syscalls themselves);
    tls.pyx's TlsTransport encrypts. Each call has the syscall's contract: bytes done (0 from read: the peer
    closed), or -1 with errno set (EAGAIN: try again when epoll says so)."""
    cdef:
        readonly bint secure
        # Readiness a read waits for besides EPOLLIN: EPOLLOUT while TLS must write before it can read
        # (handshake messages the socket did not take). Always 0 on a plain socket.
        uint32_t read_wants

    cdef ssize_t read(self, int fd, char *buffer, size_t size) noexcept
    cdef ssize_t write(self, int fd, const char *data, size_t size) noexcept
    cdef ssize_t write_parts(self, int fd, iovec *parts, int count) noexcept
    cdef ssize_t send_file(self, int fd, int file_fd, long *offset, size_t count) noexcept
    cdef void shutdown_write(self, int fd) noexcept
    cdef void release(self) noexcept


# The one plain transport every plain connection shares (it holds no state of its own).
cdef Transport PLAIN
