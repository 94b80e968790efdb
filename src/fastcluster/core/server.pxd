from libc.stdint cimport uint64_t

from fastcluster.core.connection cimport Connection
from fastcluster.core.context cimport Context


cdef enum:
    MAX_LISTENERS = 64


cdef class Server:
    cdef:
        Context ctx
        int listeners[MAX_LISTENERS]
        int listener_count
        list listener_sockets
        bint exclusive_accept
        # The TlsContext of each listening fd serving TLS; None when all are plain.
        dict tls
        bint accepting
        bint stop_requested
        # finish_stop has stopped accepting and told the connections (ctx.draining is set by stop()).
        bint drain_begun
        bint graceful
        double drain_deadline
        double next_tick
        readonly bint running
        object asyncio_loop
        # (read end, write end) of the pipe signals wake the loop through, while run() runs.
        tuple signal_pipe

    cdef int start(self) except -1
    cdef object watch_signals(self)
    cdef int unwatch_signals(self, object previous) except -1
    cdef bint turn(self, int timeout_ms) except -1
    cdef int end_loop(self) except -1
    cdef void finish(self) noexcept
    cdef int wait_ms(self) except -1
    cdef int run_timers(self) except -1
    cdef void drop_failed(self, Connection conn, str what) noexcept
    cdef int dispatch(self, uint64_t data, unsigned int ready) except -1
    cdef int accept_all(self, int listener) except -1
    cdef int set_accepting(self, bint accepting) except -1
    cdef int tick(self) except -1
    cdef bint finish_stop(self) except -1
    cdef int let_go_of_listeners(self) except -1
    cdef void close_all(self) noexcept
