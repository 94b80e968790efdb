# The worker's event loop: epoll over the listening sockets and every connection, accept4 until EAGAIN,
# dispatch of readiness to connections, and a once-a-second tick that refreshes the Date, writes the
# heartbeat, sweeps timeouts and finishes a drain. Timeouts need no timer per request; only answers that
# wait on purpose (delays, drips) set one, in a heap checked every loop turn. No Python socket per connection.
import logging
import os
import signal
import time
from heapq import heappop

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, ECONNABORTED, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM, errno
from libc.stdint cimport uint64_t
from posix.unistd cimport close as close_fd, read

from fastcluster.core.connection cimport Connection, send_gathered_output
from fastcluster.core.context cimport Context
from fastcluster.core.tls cimport TlsContext
from fastcluster.core.syscalls cimport (
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLLERR,
    EPOLLEXCLUSIVE,
    EPOLLHUP,
    EPOLLRDHUP,
    EPOLLIN,
    EPOLLOUT,
    IPPROTO_TCP,
    SOCK_CLOEXEC,
    SOCK_NONBLOCK,
    TCP_NODELAY,
    accept4,
    epoll_create1,
    epoll_ctl,
    epoll_event,
    epoll_wait,
    monotonic,
    setsockopt,
)

from fastcluster.core.stats import STATE_DRAINING, STATE_SERVING

log = logging.getLogger("fastcluster.worker")

DEF MAX_EVENTS = 512
cdef uint64_t LISTENER = 1ULL << 32
# The read end of the signal wake-up pipe (see watch_signals).
cdef uint64_t SIGNAL_PIPE = 1ULL << 33


cdef class Server:
    def __init__(self, Context ctx, listeners, *, bint exclusive_accept=False, dict tls=None):
        """listeners: the worker's listening socket objects (closed when the drain starts); tls: the
        TlsContext of each listening fd that serves TLS (the others are plain)."""
        if len(listeners) > MAX_LISTENERS:
            raise ValueError(f"at most {MAX_LISTENERS} listening sockets per worker")
        self.ctx = ctx
        self.listener_sockets = list(listeners)
        self.listener_count = len(listeners)
        for i, sock in enumerate(listeners):
            self.listeners[i] = sock.fileno()
        self.exclusive_accept = exclusive_accept
        self.tls = tls or None

    @property
    def responder(self):
        return self.ctx.responder

    def set_app_factory(self, factory) -> None:
        """Make every new connection hand its requests to factory(connection) instead of the responder.
        App requests cost far more than the sends of their answers, so a loop turn's answers are gathered
        and sent together (Context.gather_output)."""
        self.ctx.app_factory = factory
        self.ctx.gather_output = True

    @property
    def open_connections(self) -> int:
        return self.ctx.open_connections

    @property
    def pending_buffers(self) -> int:
        return self.ctx.pending_buffers

    @property
    def parsers_lent(self) -> int:
        return self.ctx.parsers_lent

    @property
    def requests_in_flight(self) -> int:
        return self.ctx.in_flight

    def stop(self, graceful: bool = True, timeout: float = 30.0) -> None:
        """Ask the loop to stop (safe from a signal handler): drain for at most `timeout` s, or at once."""
        if self.stop_requested and graceful:
            return
        self.stop_requested = True
        self.graceful = graceful
        # From now on answers end their connections (Connection: close), also those an app is making now.
        self.ctx.draining = True
        self.drain_deadline = monotonic() + timeout
        if self.asyncio_loop is not None:
            self.asyncio_loop.call_soon_threadsafe(self.poll)  # begin the drain now, not at the next tick

    def run(self) -> None:
        """Serve until stop(); returns when drained (or at once on a non-graceful stop)."""
        self.start()
        previous = self.watch_signals()
        try:
            while not self.turn(self.wait_ms()):
                pass
        finally:
            self.unwatch_signals(previous)
            self.finish()

    cdef object watch_signals(self):
        """Have a signal wake epoll_wait: the C handler writes its number to a pipe epoll watches. A signal
        that comes while the loop is not inside epoll_wait (or goes to another thread) does not interrupt it,
        and its Python handler (a stop) would wait for the next tick, up to a second. Returns the wake-up fd
        to restore; None when this is not the main thread, where signals cannot be watched."""
        cdef epoll_event event
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        except ValueError:
            os.close(read_end)
            os.close(write_end)
            return None
        self.signal_pipe = (read_end, write_end)
        event.events = EPOLLIN
        event.data.u64 = SIGNAL_PIPE | <unsigned int>read_end
        if epoll_ctl(self.ctx.epfd, EPOLL_CTL_ADD, read_end, &event) < 0:
            failure = OSError(errno, "cannot watch the signal pipe")
            self.unwatch_signals(previous)
            raise failure
        return previous

    cdef int unwatch_signals(self, object previous) except -1:
        if self.signal_pipe is None:
            return 0
        signal.set_wakeup_fd(previous)
        for fd in self.signal_pipe:
            os.close(fd)
        self.signal_pipe = None
        return 0

    def run_in(self, loop) -> None:
        """Serve from an asyncio loop until stop() has finished: the loop watches our epoll fd, so one
        callback handles a whole batch of ready connections, and apps can await anything asyncio offers."""
        self.start()
        self.asyncio_loop = loop
        loop.add_reader(self.ctx.epfd, self.poll)
        self.schedule_tick()
        try:
            loop.run_forever()
        finally:
            loop.remove_reader(self.ctx.epfd)
            self.finish()
            self.asyncio_loop = None  # our caller closes it next: a late stop() must not call into it

    def poll(self) -> None:
        if not self.running:
            return  # a stop's extra poll (stop()) that came after the last turn
        if self.turn(0):
            self.end_loop()

    def schedule_tick(self) -> None:
        if not self.running:
            return  # the loop runs on after we finished (the app's lifespan shutdown): no more ticks
        if self.turn(0):
            self.end_loop()
        else:
            self.asyncio_loop.call_later(max(0.0, self.next_tick - monotonic()), self.schedule_tick)

    cdef int end_loop(self) except -1:
        """After the last turn: stop the asyncio loop, once. uvloop's stop() is a callback: a second one (a
        stop's poll after the tick's last turn) would be left queued and stop the app's lifespan shutdown."""
        self.running = False
        self.asyncio_loop.stop()
        return 0

    cdef int start(self) except -1:
        cdef Context ctx = self.ctx
        ctx.epfd = epoll_create1(EPOLL_CLOEXEC)
        if ctx.epfd < 0:
            raise OSError(errno, "epoll_create1")
        self.set_accepting(True)
        ctx.stats.state = STATE_SERVING
        self.tick()
        self.running = True
        return 0

    cdef bint turn(self, int timeout_ms) except -1:
        """Wait up to timeout_ms for readiness, handle it, tick when due; True once the loop may end."""
        cdef Context ctx = self.ctx
        cdef epoll_event events[MAX_EVENTS]
        cdef int ready, i
        with nogil:
            ready = epoll_wait(ctx.epfd, events, MAX_EVENTS, timeout_ms)
        if ready < 0:
            if errno != EINTR:
                raise OSError(errno, "epoll_wait")
            ready = 0
        ctx.now = monotonic()
        for i in range(ready):
            self.dispatch(events[i].data.u64, events[i].events)
        if ctx.gathered:
            send_gathered_output(ctx)
        if ctx.timers:
            self.run_timers()
        if ctx.now >= self.next_tick:
            self.tick()
        PyErr_CheckSignals()  # runs the Python signal handlers (stop requests); a flag test if none
        return self.stop_requested and self.finish_stop()

    cdef void finish(self) noexcept:
        cdef Context ctx = self.ctx
        self.running = False
        self.close_all()
        if ctx.access_log is not None:
            try:
                ctx.access_log.flush()
            except Exception:
                log.exception("could not flush the access log")
        close_fd(ctx.epfd)
        ctx.epfd = -1

    cdef int wait_ms(self) except -1:
        """Milliseconds epoll may sleep: until the next tick or the next timer, whichever comes first; none
        when a stop was asked before the loop ran (its drain begins at once)."""
        if self.stop_requested and not self.drain_begun:
            return 0
        cdef double wake = self.next_tick
        if self.ctx.timers and <double>self.ctx.timers[0][0] < wake:
            wake = self.ctx.timers[0][0]
        cdef double remaining = wake - monotonic()
        return 0 if remaining <= 0 else <int>(remaining * 1000) + 1

    cdef int run_timers(self) except -1:
        cdef Context ctx = self.ctx
        cdef Connection conn
        cdef list timers = ctx.timers
        while timers and <double>timers[0][0] <= ctx.now:
            conn = <Connection>heappop(timers)[2]
            try:
                conn.on_timer()
            except Exception:
                self.drop_failed(conn, "timed answer")
        return 0

    cdef void drop_failed(self, Connection conn, str what) noexcept:
        """A connection's handler raised: log it, forget its unsent shared output, close it; the worker lives."""
        log.exception("%s on fd %d failed; closing the connection", what, conn.fd)
        self.ctx.out_len = self.ctx.out_start
        conn.close()

    cdef int dispatch(self, uint64_t data, unsigned int ready) except -1:
        cdef int fd = <int>(data & 0xFFFFFFFF)
        cdef char drained[64]
        cdef Connection conn
        if data & LISTENER:
            return self.accept_all(fd)
        if data & SIGNAL_PIPE:
            while read(fd, drained, sizeof(drained)) > 0:
                pass
            return 0  # the turn runs the signal's Python handler (PyErr_CheckSignals)
        obj = self.ctx.connections[fd]
        if obj is None:
            return 0
        conn = <Connection>obj
        try:
            if ready & EPOLLOUT:
                conn.on_writable()
            if ready & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP) and conn.fd >= 0:
                conn.on_readable()
        except Exception:
            self.drop_failed(conn, "readiness handling")
        return 0

    cdef int accept_all(self, int listener) except -1:
        cdef Context ctx = self.ctx
        cdef int fd, one = 1
        cdef epoll_event event
        cdef Connection conn
        # A socket shared by all workers: take one connection per wake-up and let the kernel wake another
        # worker for the next, or the first worker to wake takes a whole burst. A socket of our own: drain it.
        cdef int budget = 1 if self.exclusive_accept else -1
        while budget != 0:
            budget -= 1
            fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                if errno == EINTR or errno == ECONNABORTED:
                    continue
                if errno == EMFILE or errno == ENFILE or errno == ENOBUFS or errno == ENOMEM:
                    # Out of descriptors: pause accepting until the next tick rather than spin on it.
                    log.warning("accept failed (errno %d); pausing accept for a second", errno)
                    self.set_accepting(False)
                return 0
            if ctx.max_connections and ctx.open_connections >= ctx.max_connections:
                # Over --limit-connections: closed at once, as nginx does past worker_connections, so the
                # client learns now instead of waiting in the listen queue behind connections that may
                # stay open for minutes (slow clients).
                close_fd(fd)
                ctx.refused_connections += 1
                continue
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))  # fails harmlessly on Unix sockets
            transport = None
            if self.tls is not None and listener in self.tls:
                try:
                    transport = (<TlsContext>self.tls[listener]).transport(fd)
                except Exception:  # OpenSSL out of memory: this client is dropped, the worker goes on
                    log.exception("cannot start TLS on a new connection")
                    close_fd(fd)
                    continue
            conn = Connection(ctx, fd, transport)
            if fd >= len(ctx.connections):
                ctx.connections.extend([None] * (fd + 1 - len(ctx.connections) + 256))
            ctx.connections[fd] = conn
            event.events = EPOLLIN
            event.data.u64 = <unsigned int>fd
            if epoll_ctl(ctx.epfd, EPOLL_CTL_ADD, fd, &event) < 0:
                conn.close()

    cdef int set_accepting(self, bint accepting) except -1:
        cdef epoll_event event
        cdef int i
        if accepting == self.accepting:
            return 0
        for i in range(self.listener_count):
            if accepting:
                event.events = EPOLLIN | (EPOLLEXCLUSIVE if self.exclusive_accept else 0)
                event.data.u64 = LISTENER | <unsigned int>self.listeners[i]
                if epoll_ctl(self.ctx.epfd, EPOLL_CTL_ADD, self.listeners[i], &event) < 0:
                    raise OSError(errno, f"cannot watch listening socket {self.listeners[i]}")
            else:
                epoll_ctl(self.ctx.epfd, EPOLL_CTL_DEL, self.listeners[i], NULL)
        self.accepting = accepting
        return 0

    cdef int tick(self) except -1:
        cdef Context ctx = self.ctx
        cdef Connection conn
        PyErr_CheckSignals()
        ctx.now = monotonic()
        self.next_tick = ctx.now + 1.0
        ctx.responder.refresh(time.time())
        ctx.stats.heartbeat = ctx.now  # CLOCK_MONOTONIC: the master compares it with its own, immune to clock steps
        if ctx.access_log is not None:
            ctx.access_log.tick(time.time())
        if ctx.refused_connections:
            log.warning("refused %d connections in the last second: %d open, --limit-connections %d",
                        ctx.refused_connections, ctx.open_connections, ctx.max_connections)
            ctx.refused_connections = 0
        if not self.accepting and not self.stop_requested:
            self.set_accepting(True)
        for obj in ctx.connections:
            if obj is not None:
                conn = <Connection>obj
                try:
                    conn.check_deadline()
                except Exception:
                    self.drop_failed(conn, "timeout handling")
        return 0

    cdef bint finish_stop(self) except -1:
        """Begin or continue a stop; True when the loop may return."""
        cdef Context ctx = self.ctx
        cdef Connection conn
        if not self.graceful:
            return True
        if not self.drain_begun:
            self.drain_begun = True
            ctx.stats.state = STATE_DRAINING
            self.set_accepting(False)
            self.let_go_of_listeners()
            for obj in ctx.connections:
                if obj is not None:
                    conn = <Connection>obj
                    conn.start_draining()
        return ctx.open_connections == 0 or ctx.now >= self.drain_deadline

    cdef int let_go_of_listeners(self) except -1:
        """At the start of a drain: take what is queued on our listening sockets (it is answered with
        Connection: close like the rest), then close our copies. A socket another process still holds (the
        master, a reload's replacement) stays open for it; once the last copy is closed the kernel refuses
        new connections at once instead of queueing them for a worker that will never accept them, so a
        proxy can retry them elsewhere."""
        cdef int i
        self.exclusive_accept = False  # take the whole queue, whatever the balance
        for i in range(self.listener_count):
            self.accept_all(self.listeners[i])
        self.listener_count = 0
        for sock in self.listener_sockets:
            sock.close()
        self.listener_sockets = []
        return 0

    cdef void close_all(self) noexcept:
        cdef Connection conn
        for obj in self.ctx.connections:
            if obj is not None:
                conn = <Connection>obj
                conn.stop()
