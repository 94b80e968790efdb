from fastcluster.core.responder cimport Responder
from fastcluster.core.static cimport StaticFiles
from fastcluster.core.stats cimport SlotStats


cdef class Context:
    cdef:
        int epfd
        double now
        # A graceful stop was asked (Server.stop): every answer from now on ends its connection.
        bint draining
        list connections
        # Timers of answers that wait (delays, drips): a heap of (time, sequence, connection).
        list timers
        unsigned long long timer_sequence
        Responder responder
        StaticFiles static   # --static DIR, else None
        # Called with each new connection to make its app adapter; None for the built-in responder.
        public object app_factory
        SlotStats *stats
        SlotStats local_stats
        object stats_block
        # The access log (None when off: then it costs one comparison per request).
        public object access_log
        bint log_headers

        Py_ssize_t max_url
        Py_ssize_t max_header_bytes
        Py_ssize_t max_headers
        Py_ssize_t max_chunk_extension
        Py_ssize_t max_pending_output
        long long max_body
        double header_timeout
        double keepalive_timeout
        double body_timeout
        double write_timeout
        double linger_timeout
        # --limit-concurrency (0: none) and the requests in flight it limits: app requests handed to the
        # adapter and not answered, built-in answers still being produced (delays, streams).
        int limit_concurrency
        readonly int in_flight
        # WebSocket (core/websocket.pyx): the largest message, the keep-alive ping's interval and timeout,
        # and whether permessage-deflate may be agreed.
        Py_ssize_t ws_max_size
        double ws_ping_interval
        double ws_ping_timeout
        bint ws_per_message_deflate

        bytearray read_buffer
        object read_view
        # read_view[:n] for recent lengths n, by n % READ_PREFIXES: a request of the same size as the one
        # before is fed to the parser without slicing a new memoryview.
        list read_prefixes
        char *read_data
        Py_ssize_t read_size

        char *out
        Py_ssize_t out_len
        Py_ssize_t out_cap
        # App workers gather the answers made in one loop turn and send them when the turn ends, so a
        # client woken by one answer finds the rest already there (an idle client costs the sender a
        # wake-up per send). `out` then holds the gathered connections' parts before out_start, each
        # connection's own (see Connection.gathered_start), and the current connection's from out_start on.
        bint gather_output
        Py_ssize_t out_start
        list gathered
        double gather_deadline

        # Resource counters: the tests assert they are back to zero when a worker exits.
        readonly Py_ssize_t open_connections
        # --limit-connections (0: none), and the connections refused over it since the last tick.
        Py_ssize_t max_connections
        Py_ssize_t refused_connections
        readonly Py_ssize_t pending_buffers  # connections holding a pending output queue
        # Parsers between requests, for any connection's next one (connection.pyx: RequestParser): the
        # last one given back, then the others; and the parsers lent to connections receiving a request.
        object spare_parser
        list spare_parsers
        readonly Py_ssize_t parsers_lent

    cdef object read_prefix(self, Py_ssize_t length)
    cdef int out_reserve(self, Py_ssize_t extra) except -1
    cdef int out_append(self, const char *data, Py_ssize_t length) except -1
    cdef int add_timer(self, double when, object connection) except -1
