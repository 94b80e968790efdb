# The WSGI (PEP 3333) exchange: environ, start_response and the answer, for the requests one connection
# parses.
from fastcluster.core.connection cimport AppAdapter
from fastcluster.core.forwarded cimport ProxyHeaders
from fastcluster.core.heads cimport Head
from fastcluster.core.responder cimport Responder


cdef class WsgiApp:
    cdef:
        readonly object app
        readonly object loop
        Responder responder
        # The thread pool of --threads N (None: the app runs in the loop).
        readonly object pool
        str root_path
        # The environ keys every request shares.
        dict base_environ
        # What the proxy headers of a trusted peer say (None: --no-proxy-headers).
        ProxyHeaders proxy
        Py_ssize_t max_output
        # Responses being streamed (Streaming): their results are closed if the worker stops before they end.
        # Pool threads add theirs under the lock, unless the worker stops.
        readonly set streams
        object streams_lock
        bint stopping

    cdef str path_info(self, bytes raw_path)
    cdef bint adopt(self, object out) except -1


cdef class Call:
    cdef:
        readonly dict environ
        # The body while it arrives, without --threads: pieces (None when none), or a spooled file.
        list pieces
        Py_ssize_t size
        object spool
        # The body as a stream the app reads while it arrives (with --threads).
        object stream
        bint keep_alive
        bint head_only
        bint http10
        double started_at
        # What start_response and write() received (the headers as given, for the access log).
        Head head
        object response_headers
        list written
        bint head_sent
        # Its body failed (the connection answers it with an error): nothing of the app's answer is sent.
        bint abandoned

    cdef int take(self, bytes data) except -1
    cdef object body_input(self)
    cdef int release(self) except -1


cdef class WsgiConnection(AppAdapter):
    cdef:
        WsgiApp shared
        # Requests whose turn has not come, in order; the one being parsed; whether one is running.
        object waiting
        Call receiving
        bint running

    cdef int begin(self, Call call) except -1
    cdef object answer(self, Call call)
    cdef bint keeps_alive(self, Call call)
    cdef int done(self, Call call, object outcome) except -1
    cdef int after(self, bint keep_alive) except -1
    cdef int answered(self, Call call, int status, Py_ssize_t size, bint keep_alive) except -1
