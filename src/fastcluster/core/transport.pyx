# The transport seam under the protocols: a connection reads and writes through a Transport, so HTTP/1.1
# (and any protocol a connection switches to) runs the same over a plain socket and over TLS. The plain
# transport is the syscalls; TLS (tls.pyx) overrides every method.
from libc.string cimport memset

from fastcluster.core.syscalls cimport MSG_NOSIGNAL, SHUT_WR, msghdr, recv, send, sendmsg, shutdown

cdef extern from "<sys/sendfile.h>" nogil:
    ssize_t sendfile(int out_fd, int in_fd, long *offset, size_t count)


cdef class Transport:
    cdef ssize_t read(self, int fd, char *buffer, size_t size) noexcept:
        return recv(fd, buffer, size, 0)

    cdef ssize_t write(self, int fd, const char *data, size_t size) noexcept:
        return send(fd, data, size, MSG_NOSIGNAL)

    cdef ssize_t write_parts(self, int fd, iovec *parts, int count) noexcept:
        cdef msghdr message
        memset(&message, 0, sizeof(message))
        message.msg_iov = parts
        message.msg_iovlen = count
        return sendmsg(fd, &message, MSG_NOSIGNAL)

    cdef ssize_t send_file(self, int fd, int file_fd, long *offset, size_t count) noexcept:
        return sendfile(fd, file_fd, offset, count)

    cdef void shutdown_write(self, int fd) noexcept:
        shutdown(fd, SHUT_WR)

    cdef void release(self) noexcept:
        pass


PLAIN = Transport()
