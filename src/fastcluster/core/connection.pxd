cimport cython
from libc.stdint cimport uint32_t

from fastcluster.core.context cimport Context
from fastcluster.core.parser_state cimport llhttp_state
from fastcluster.core.producer cimport Producer, body_length
from fastcluster.core.transport cimport Transport


cdef class AppAdapter
cdef class UpgradedProtocol
cdef class RequestParser


cdef tuple split_target(bytes url)
cdef int send_gathered_output(Context ctx) except -1


cdef enum ConnectionState:
    IDLE            # between requests: the keep-alive timeout runs
    READING_HEAD    # a request has begun and its head is not complete: the header timeout runs
    READING_BODY    # the head is complete and the body is arriving: the body timeout runs between reads
    CLOSING         # nothing more is parsed; the connection closes once its output is sent
    LINGERING       # output sent, write side shut: input is read and dropped until EOF or the linger timeout
    UPGRADED        # switched protocols: every read goes to the upgraded protocol, which keeps its own timeouts


# A boolean in one byte (bint takes four): Connection keeps a dozen, and its size is what an idle connection
# costs (see docs/architecture.md, "Memory per connection").
ctypedef unsigned char flag


# Final: calls to its methods (the parser's callbacks among them) are direct, not through a vtable.
@cython.final
cdef class Connection:
    # Fields by size (pointers and 8-byte numbers, then 4-, 2- and 1-byte ones), so none is padded: the
    # object is 320 bytes (+16 for the GC), in pymalloc's 336-byte class.
    cdef:
        # How the bytes reach the socket: the plain syscalls, or TLS (transport.pxd).
        readonly Transport transport
        # The peer as the access log writes it (its host, "unix" or "-"), set by client_address().
        public object peer
        Context ctx
        # The parser, lent while a request is being received (None between requests: RequestParser).
        RequestParser parser
        # llhttp's own state inside the parser, when its layout checked out (else NULL: use the methods).
        llhttp_state *llhttp
        double deadline

        # Output the socket did not take yet, in order, waiting for EPOLLOUT (None when none):
        # bytes objects held by reference, the first one sent up to pending_offset.
        list pending
        Py_ssize_t pending_offset
        Py_ssize_t pending_size
        # This connection's part of the output gathered in the current loop turn (Context.gathered).
        Py_ssize_t gathered_start
        Py_ssize_t gathered_end

        # Bytes received but not yet accounted for by a parser callback: bounds a head sent in trickles.
        Py_ssize_t unaccounted
        # The app adapter of this connection (None: the built-in responder answers) and the request headers
        # collected for it (None between requests).
        AppAdapter app
        list headers
        # The client's (host, port), looked up on first use (False: not yet; None: not an IP peer).
        object client
        # Our error answer to a request that failed while the app still owed answers to requests before it:
        # sent once those are (None when none).
        bytes held_answer
        # Input held back while our output to a slow reader is over the limit (None when none).
        bytes unparsed

        # The request being parsed.
        bytes url
        Py_ssize_t url_length
        Py_ssize_t header_bytes
        long long content_length
        long long body_bytes
        bytes control          # the X-Fastcluster-Response header
        list request_headers   # collected only for the routes that answer with them
        list request_body
        double request_start
        # The request headers an access log format names (lower-cased name: value), for built-in answers.
        dict logged_headers

        # The answer being produced piece by piece (None when none), the answers queued behind it in
        # request order (bytes or Producer; None when none) and the bytes among them (an app waits for its
        # drain while they are many), and the time its timer is set for (0: none).
        Producer producer
        list later
        Py_ssize_t later_size
        double timer_at
        # The protocol this connection switched to (None: HTTP/1.1), fed every read while UPGRADED.
        UpgradedProtocol upgraded

        readonly int fd
        ConnectionState state
        uint32_t events
        # How many requests the app has yet to answer.
        int busy
        int header_count
        int host_count
        short reject_status
        # The built-in route the URL takes, decided before the headers arrive (what it needs is above).
        unsigned char route

        flag peer_gone
        flag linger_on_close
        # The request being parsed asks to switch protocols (Upgrade and Connection: upgrade); one not
        # taken (no WebSocket handshake the app or /ws accepts) closes the connection after its answer.
        flag upgrade_asked
        # The app has the request being parsed, whose body is not complete yet.
        flag app_request_open
        # Reading is paused for the app (a body it has not consumed).
        flag reading_paused
        flag stop_parsing
        flag headers_done
        flag expect_continue
        flag chunked
        # The producer's file part could not be sent: the socket is full (wait for EPOLLOUT).
        flag file_blocked

    cdef int on_message_begin(self) except -1
    cdef int on_url(self, bytes url) except -1
    cdef int on_header(self, bytes name, bytes value) except -1
    cdef int on_headers_complete(self) except -1
    cdef int on_body(self, bytes body) except -1
    cdef int on_message_complete(self) except -1
    cdef int borrow_parser(self) except -1
    cdef void return_parser(self) noexcept
    cdef void drop_parser(self) noexcept
    cdef void release_idle(self) noexcept
    cdef object method(self)
    cdef object http_version(self)
    cdef object keeps_alive(self)
    cdef int log_header(self, bytes name, bytes value) except -1
    cdef int app_message_complete(self) except -1
    cdef int upgrade(self, UpgradedProtocol protocol) except -1
    cdef int write_bytes(self, const char *data, Py_ssize_t length) except -1
    cdef int end_upgraded(self, bint linger) except -1
    cdef int refuse(self, int status, bytes answer) except -1
    cdef void stop(self) noexcept
    cdef str method_name(self)
    cpdef object client_address(self)
    cpdef int send(self, bytes data) except -1
    cpdef int write_answer(self, bytes data) except -1
    cpdef int answered(self, int status, double started, bint keep_alive) except -1
    cdef bint closes_for_drain(self)
    cdef void release_requests(self) noexcept
    cpdef int set_reading(self, bint reading) except -1
    cdef int on_readable(self) except -1
    cdef int gather(self) except -1
    cdef int send_gathered(self) except -1
    cdef int on_writable(self) except -1
    cdef int parse(self, object view, const char *data, Py_ssize_t length) except -1
    cdef Py_ssize_t output_size(self) noexcept
    cdef int resume_parsing(self) except -1
    cdef int write(self, bytes data) except -1
    cdef int choose_route(self) except -1
    cdef bint request_line_ok(self, const char *at, size_t length) noexcept
    cdef bint target_ok(self, int method) except -1
    cdef int send_answer(self, object answer) except -1
    cdef int pump(self) except -1
    cdef int send_file(self) except -1
    cdef int on_timer(self) except -1
    cdef ssize_t send_now(self, const char *data, Py_ssize_t length) except -2
    cdef int send_shared(self) except -1
    cdef int send_out(self, Py_ssize_t start, Py_ssize_t end) except -1
    cdef int queue(self, bytes data, Py_ssize_t already_sent) except -1
    cdef int send_pending(self) except -1
    cdef int flush(self) except -1
    cdef int after_output(self) except -1
    cdef int fail(self, int status) except -1
    cdef int check_deadline(self) except -1
    cdef int start_draining(self) except -1
    cdef void close_idle_soon(self) noexcept
    cdef void set_events(self, uint32_t events) noexcept
    cdef void abort(self) noexcept
    cdef void close(self) noexcept


cdef class RequestParser:
    cdef:
        # The connection it is lent to (None while spare).
        Connection conn
        object parser
        # The parser's methods, bound once.
        object feed_data
        object get_http_version
        object should_keep_alive
        object get_method
        llhttp_state *llhttp
        # The input being fed and the two bytes fed before it, for the request line's checks
        # (check_request_line); version_due: the target's space ended the last input, so the next byte
        # fed must begin the protocol name.
        const char *fed_start
        const char *fed_end
        char fed_tail[2]
        bint version_due

    cdef void discard(self) noexcept


cdef class AppAdapter:
    """The app's side of one connection: the ASGI and WSGI adapters derive from it, and the connection
    calls it as it parses each request."""
    cdef:
        readonly Connection conn
        # What the app's side waits on while the client is slow to read (None when nothing waits).
        object drain_waiter

    cdef object wait_for_drain(self, object loop, Py_ssize_t limit)
    cdef int request(self, str method, bytes url, bint http11, list headers, bint keep_alive) except -1
    cdef int body(self, bytes data) except -1
    # Returns 1 when the connection may parse on (the answer keeps it alive), 0 when it must stop.
    cdef int message_complete(self) except -1
    # The request being received failed (its body broke a limit or the framing): the connection answers it
    # with an error and closes. Returns 1 when the app had begun its answer (then no error can follow).
    cdef int abandon(self) except -1
    cdef int drained(self) except -1
    # The connection has been idle a while (no request in progress or unanswered): let go of what only
    # requests need (the next one makes it again).
    cdef int idle(self) except -1
    cdef int connection_lost(self) except -1


cdef class UpgradedProtocol:
    """A protocol the connection switched to after an accepted upgrade (RFC 6455 WebSocket): the connection
    keeps the I/O (reads, writes through write()/write_bytes()/flush(), backpressure, the write timeout,
    counters) and hands it every read's bytes; the protocol keeps its own state and timeouts."""
    cdef:
        readonly Connection conn

    cdef int data_received(self, const char *data, Py_ssize_t length) except -1
    # The connection's unsent output fell to the limit or below.
    cdef int drained(self) except -1
    # The once-a-second sweep (keep-alive pings, closing timeouts); on_timer: a timer set with add_timer came.
    cdef int on_tick(self, double now) except -1
    cdef int on_timer(self, double now) except -1
    # The worker stops now: tell the peer, best effort (the connection closes right after).
    cdef int going_away(self) except -1
    cdef int connection_lost(self) except -1
