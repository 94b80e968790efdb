# The worker-wide state every connection reads: limits and timeouts, the coarse clock, the epoll fd,
# the responder, the stats record, and the read and write buffers all connections share (a worker handles
# one connection at a time, so one buffer of each serves them all).
import time
from heapq import heappush

from cpython.memoryview cimport PyMemoryView_GET_BUFFER
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdlib cimport free
from libc.string cimport memcpy
from posix.unistd cimport getpid

from fastcluster.core.buffers cimport grow
from fastcluster.core.stats cimport slot_record
from fastcluster.core.syscalls cimport monotonic

from fastcluster.core.stats import STATE_BOOTING

READ_SIZE = 65536
DEF READ_PREFIXES = 64


cdef class Context:
    def __init__(self, Responder responder, *, limits, stats_block=None, int record=0, access_log=None,
                 StaticFiles static=None):
        self.responder = responder
        self.static = static
        self.connections = []
        self.timers = []
        self.epfd = -1
        self.now = monotonic()
        self.max_url = limits.max_request_line
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_chunk_extension = limits.max_chunk_extension
        self.max_pending_output = limits.max_pending_output
        self.max_body = limits.max_body
        self.header_timeout = limits.header_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        self.body_timeout = limits.body_timeout
        self.write_timeout = limits.write_timeout
        self.linger_timeout = limits.linger_timeout
        self.limit_concurrency = min(limits.limit_concurrency, 1 << 30)
        self.ws_max_size = limits.ws_max_size
        self.ws_ping_interval = limits.ws_ping_interval
        self.ws_ping_timeout = limits.ws_ping_timeout
        self.ws_per_message_deflate = limits.ws_per_message_deflate
        self.max_connections = limits.max_connections
        self.read_buffer = bytearray(READ_SIZE)
        self.read_view = memoryview(self.read_buffer)
        self.read_prefixes = [None] * READ_PREFIXES
        self.read_data = self.read_buffer
        self.read_size = READ_SIZE
        self.gathered = []
        self.spare_parsers = []
        self.stats_block = stats_block
        self.access_log = access_log
        self.log_headers = access_log is not None and bool(access_log.header_names)
        self.stats = &self.local_stats if stats_block is None else slot_record(stats_block, record)
        self.stats.pid = getpid()
        self.stats.started = time.time()
        self.stats.state = STATE_BOOTING

    def __dealloc__(self):
        free(self.out)

    cdef object read_prefix(self, Py_ssize_t length):
        """The first length bytes of the read buffer, as a memoryview."""
        cdef Py_ssize_t slot = length % READ_PREFIXES
        view = self.read_prefixes[slot]
        if view is None or PyMemoryView_GET_BUFFER(view).len != length:
            view = self.read_prefixes[slot] = self.read_view[:length]
        return view

    cdef int out_reserve(self, Py_ssize_t extra) except -1:
        return grow(&self.out, &self.out_cap, self.out_len + extra, PY_SSIZE_T_MAX, 65536)

    cdef int out_append(self, const char *data, Py_ssize_t length) except -1:
        self.out_reserve(length)
        memcpy(self.out + self.out_len, data, length)
        self.out_len += length
        return 0

    cdef int add_timer(self, double when, object connection) except -1:
        """Have the loop call connection.on_timer() once `when` (monotonic seconds) has come."""
        self.timer_sequence += 1
        heappush(self.timers, (when, self.timer_sequence, connection))
        return 0
