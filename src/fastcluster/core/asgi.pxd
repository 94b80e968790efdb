# The ASGI 3 HTTP exchange: scopes, receive and send for the requests one connection parses.
from fastcluster.core.connection cimport AppAdapter
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
        # Tasks start eagerly (run at once, up to their first wait) where asyncio can (3.12+).
        bint eager
        dict task_options


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
        # The task running the app for this request (None until it starts).
        object task

        bint response_started
        # The head the app started, until its first body frames it (None after).
        Head head
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
    cdef int write(self, bytes data) except -1
    cdef int finish(self, bint keep_alive) except -1
    cdef int app_ended(self, object exc) except -1


cdef class AppRun:
    cdef:
        Exchange exchange
        # The app's coroutine (or the iterator of its awaitable); None when calling the app raised error.
        object coro
        object error

    cdef object step(self, object value)
    cdef int ended(self, object error) except -1


cdef class AsgiConnection(AppAdapter):
    cdef:
        AsgiApp shared
        # Requests in order: the first is running, the rest wait their turn (pipelining).
        object exchanges
        # The exchange whose request is being parsed (the last one).
        Exchange receiving
        # Inside a parser callback: answers are written to leave with the read's one send.
        bint parsing

    cdef int start(self, Exchange exchange) except -1
    cdef int finished(self, Exchange exchange, bint keep_alive) except -1
    cdef int log_access(self, Exchange exchange) except -1
