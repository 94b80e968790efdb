# The ASGI 3 HTTP exchange: scopes, receive and send for the requests one connection parses.
from fastcluster.core.connection cimport AppAdapter
from fastcluster.core.forwarded cimport ProxyHeaders
from fastcluster.core.heads cimport Head
from fastcluster.core.responder cimport Responder


cdef class AsgiApp:
    cdef:
        readonly object app
        readonly object loop
        Responder responder
        str root_path
        bytes raw_root_path
        # The lifespan state every request's scope gets a shallow copy of.
        public dict state
        Py_ssize_t max_output
        # The scope every request's is copied from.
        dict scope_template
        dict task_options
        object context
        # What the proxy headers of a trusted peer say (None: --no-proxy-headers).
        ProxyHeaders proxy

    cdef object new_task(self, object coroutine)


cdef class Exchange:
    cdef:
        AsgiConnection owner
        readonly dict scope
        # Body received and not yet handed to the app (None when none), and its size.
        list body
        Py_ssize_t buffered
        bint more_body
        bint end_delivered
        bint keep_alive
        bint head_only
        bint http10
        double started_at
        object wakeup
        # What runs the app for this request: its AppRun, or the Task of its own that drives it (None
        # until it starts).
        object task

        bint response_started
        # The head the app started, until its first body frames it (None after); its headers (the access log's).
        Head head
        object response_headers
        int status
        bint chunked
        bint trailers
        bint body_ended
        bint trailer_started
        bint complete
        bint disconnected
        # The Content-Length the app gave (-1: none), the body bytes the app sent, all bytes sent.
        long long declared
        long long body_sent
        Py_ssize_t sent

    cdef int deliver(self, bytes data) except -1
    cdef int wake(self) except -1
    cdef object send_body(self, object body, bint more)
    cdef object send_file(self, object path)
    cdef object send_trailers(self, object headers, bint more)
    cdef int end_if_draining(self) except -1
    cdef int write(self, bytes data) except -1
    cdef int finish(self, bint keep_alive) except -1
    cdef int app_ended(self, object exc) except -1


# What a resume returns once the app has ended; what AppRun.waiting_on holds when it waits on nothing.
cdef object DONE
cdef object NOTHING

cdef bint in_a_task(object loop) except -1
cdef object field(object message, str key, object default)


cdef class Steppable:
    cdef object resume(self, object value, object error)


cdef class AppRun(Steppable):
    cdef:
        Exchange exchange
        # The app's coroutine (or the iterator of its awaitable); None when calling the app raised error.
        object coro
        object error
        object context
        # What the app yielded in its first step, taken before a Task drove it (NOTHING: none).
        object waiting_on

    cdef int ended(self, object error) except -1


cdef class ConnectionRunner(Steppable):
    cdef:
        object loop
        object task
        # The request whose app it drives; None while idle, waiting on `idle`.
        AppRun current
        object idle
        bint stopping

    cdef int take(self, AppRun run) except -1
    cdef int stop(self) except -1
    cdef int wake(self) except -1


cdef class AsgiConnection(AppAdapter):
    cdef:
        AsgiApp shared
        # Requests in order: the first is running, the rest wait their turn (pipelining).
        list exchanges
        # The exchange whose request is being parsed (the last one).
        Exchange receiving
        # Inside a parser callback: answers are written to leave with the read's one send.
        bint parsing
        # The Task that runs the apps of this connection's requests (None until the first).
        ConnectionRunner runner

    cdef int start(self, Exchange exchange) except -1
    cdef object step_in_read(self, AppRun run)
    cdef int finished(self, Exchange exchange, bint keep_alive) except -1
    cdef int log_access(self, Exchange exchange) except -1
