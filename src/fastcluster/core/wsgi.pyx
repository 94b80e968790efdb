# The WSGI (PEP 3333) exchange: builds each request's environ, runs the app inline in the worker's loop
# (fastest for fast apps) or, with --threads N, on a thread pool reading its body as it arrives, so a slow
# request does not hold up the worker's other connections. Either way the app never sees a running event
# loop: WSGI code is synchronous, and Django's ORM, asyncio.run() and async-to-sync bridges refuse to run
# inside one. Small answers leave in one piece, iterables are
# streamed as they yield with backpressure, wsgi.file_wrapper files go out by sendfile, and close() of the
# result is always called, also when the worker stops mid-stream.
import asyncio
import logging
import os
import stat
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from queue import SimpleQueue
from tempfile import TemporaryFile
from asyncio.events import _set_running_loop
from io import BytesIO
from urllib.parse import unquote

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr

from fastcluster.core.connection cimport Connection, split_target
from fastcluster.core.forwarded cimport ProxyHeaders
from fastcluster.core.producer cimport body_length
from fastcluster.core.heads cimport Head, bodiless, body_bytes, chunk, error_answer, frame, wsgi_head
from fastcluster.core.static cimport FileBody, OpenFile, file_of_descriptor

from fastcluster.access_log import EnvironHeaders
from fastcluster.app.body_stream import BodyStream
from fastcluster.core.heads import BadResponse

log = logging.getLogger("fastcluster.app")

# A response whose iterable is neither a list nor a tuple is streamed unless it declared at most this many
# bytes in Content-Length (then it is gathered and sent in one piece, the fast path).
DEF STREAM_ABOVE = 65536
# A request body larger than this is spooled to a temporary file while it arrives (without --threads).
DEF SPOOL_ABOVE = 1048576
# Environ keys of the request headers seen so far, by header name (bounded: names are the client's).
DEF MAX_HEADER_KEYS = 512
cdef dict HEADER_KEYS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
# The end of an iterable.
DONE = object()


# --allow-underscore-headers: header names with "_" get environ keys too.
cdef bint UNDERSCORE_HEADERS = False


cdef str environ_key(bytes name):
    """The environ key of a header; None for a name with "_" (unless --allow-underscore-headers): its key
    would be the dashed name's, so a client could pass X_Forwarded_For for a proxy's X-Forwarded-For."""
    key = HEADER_KEYS.get(name)
    if key is None:
        if not UNDERSCORE_HEADERS and memchr(PyBytes_AS_STRING(name), c'_', PyBytes_GET_SIZE(name)) != NULL:
            key = False
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(HEADER_KEYS) < MAX_HEADER_KEYS:
            HEADER_KEYS[name] = key
    return None if key is False else <str>key


cdef str latin1(bytes data):
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), NULL)


class FileWrapper:
    """wsgi.file_wrapper: a file sent by sendfile when it is a regular file, else read in blocks."""

    def __init__(self, filelike, block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        while True:
            block = self.filelike.read(self.block_size)
            if not block:
                return
            yield block


cdef object file_part(object wrapper):
    """(OpenFile on a copy of its descriptor, offset, length) for a FileWrapper over a regular file whose
    position is known, else None (then it is iterated)."""
    try:
        fd = wrapper.filelike.fileno()
        info = os.fstat(fd)
        offset = wrapper.filelike.tell()
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode) or offset > info.st_size:
        return None
    return file_of_descriptor(os.dup(fd), info.st_size), offset, info.st_size - offset


cdef int run_unregistered(object loop) except -1:
    """Have the loop, once it runs, not registered as the running one, for the whole run rather than
    around each call of app code: asyncio's _set_running_loop makes a getpid() system call each time
    (2.4 µs here, and a request took four). The loop does not need it: it is looked up by asyncio's
    functions that take no loop, which our code does not call."""
    loop.call_soon(_set_running_loop, None)
    return 0


def close_result(result) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("the app's result failed to close")


cdef class Streaming:
    """A response to send piece by piece as the app's iterable yields it, by its task. With --threads, the
    pool thread that ran the app keeps it: each piece is pulled and close() is called there, where the
    app's request lives (frameworks keep it in thread-locals and context variables, and a close() that
    blocks must not stall the loop)."""
    cdef object iterator
    cdef object result
    cdef object task
    # With --threads: what the thread keeping it is asked to do, (future, close?) pairs (None: no thread).
    cdef object requests
    cdef bint closing


def settle(future, piece, error) -> None:
    """In the loop: the outcome of what the thread keeping a response was asked."""
    if future is not None and not future.cancelled():
        if error is None:
            future.set_result(piece)
        else:
            future.set_exception(error)


cdef int keep_stream(Streaming out, Call call, object loop) except -1:
    """On the pool thread that ran the app: pull the pieces of its response and close it, as the loop asks;
    return once it is closed."""
    while True:
        future, closing = out.requests.get()
        if closing:
            result, out.result = out.result, None
            close_result(result)
            piece, error = None, None
        else:
            try:
                piece, error = pull(call, out.iterator), None
            except BaseException as exc:
                piece, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, future, piece, error)
        except RuntimeError:
            pass  # the loop is closed: the worker has stopped
        if closing:
            return 0


cdef object close_stream(WsgiApp shared, Streaming out):
    """Close a streamed response's result, once: here, or on the thread that keeps it (then the future that
    is done when it has run; None otherwise)."""
    if out.closing:
        return None
    out.closing = True
    shared.streams.discard(out)
    if out.requests is None:
        result, out.result = out.result, None
        close_result(result)
        return None
    closed = shared.loop.create_future()
    out.requests.put((closed, True))
    return closed


cdef class WsgiApp:
    """What every connection of a worker shares: the app, the loop, the pool, the constant environ."""

    def __init__(self, app, loop, Responder responder, *, int threads=0, str root_path="", server=None,
                 Py_ssize_t max_output=256 * 1024, ProxyHeaders proxy=None, bint underscore_headers=False):
        global UNDERSCORE_HEADERS
        UNDERSCORE_HEADERS = underscore_headers
        for name in [name for name in HEADER_KEYS if b"_" in name]:
            del HEADER_KEYS[name]  # remembered under the other setting
        self.app = app
        self.proxy = proxy
        self.loop = loop
        run_unregistered(loop)
        self.responder = responder
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="wsgi") if threads else None
        self.root_path = root_path
        self.max_output = max_output
        self.streams = set()
        self.streams_lock = threading.Lock()
        host, port = server or ("", 0)
        self.base_environ = {
            "SCRIPT_NAME": root_path,
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": self.pool is not None,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            # wsgi.input ends where the body does, chunked too: frameworks (werkzeug) may read it to its end.
            "wsgi.input_terminated": True,
        }

    def adapter(self, Connection conn) -> WsgiConnection:
        cdef WsgiConnection adapter = WsgiConnection.__new__(WsgiConnection)
        adapter.shared = self
        adapter.waiting = deque()
        return adapter

    def close(self) -> None:
        """The worker stops (its loop no longer runs): the threads keeping streamed responses close them and
        the pool finishes, so that no thread is inside the app; then the tasks of the responses still
        streaming are cancelled, and every result not closed yet is."""
        cdef Streaming out
        with self.streams_lock:
            self.stopping = True  # no thread hands over a streamed response from now on
            streams = list(self.streams)
        if self.pool is not None:
            for out in streams:
                close_stream(self, out)
            self.pool.shutdown(wait=True, cancel_futures=True)
        tasks = [out.task for out in streams if out.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            run_unregistered(self.loop)  # the tasks' cancellation closes results: app code
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        for out in streams:
            close_stream(self, out)

    cdef bint adopt(self, object out) except -1:
        """From a pool thread: count a streamed response it keeps, unless the worker stops."""
        with self.streams_lock:
            if self.stopping:
                return False
            self.streams.add(out)
            return True

    cdef str path_info(self, bytes raw_path):
        """The decoded path, less SCRIPT_NAME when a proxy passed the prefix on (as gunicorn does)."""
        if memchr(PyBytes_AS_STRING(raw_path), c'%', PyBytes_GET_SIZE(raw_path)) == NULL:
            path = latin1(raw_path)
        else:
            path = unquote(latin1(raw_path), encoding="latin-1")
        root = self.root_path
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root):]
        return path


cdef class Call:
    """One request: its environ, its body, and what the app's start_response and write() gave."""

    cdef int take(self, bytes data) except -1:
        """Keep a piece of body (without --threads): in memory, or spooled once it grows large."""
        self.size += PyBytes_GET_SIZE(data)
        if self.spool is not None:
            self.spool.write(data)
        elif self.size > SPOOL_ABOVE:
            self.spool = TemporaryFile()
            self.spool.writelines(self.pieces or ())
            self.spool.write(data)
            self.pieces = None
        elif self.pieces is None:
            self.pieces = [data]
        else:
            self.pieces.append(data)
        return 0

    cdef object body_input(self):
        if self.spool is not None:
            self.spool.seek(0)
            return self.spool
        if self.pieces is None:
            return BytesIO()
        body = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces = None
        return BytesIO(body)

    cdef int release(self) except -1:
        """The request is done: its spooled body (if any) is closed now, not when the GC finds it."""
        if self.spool is not None:
            spool, self.spool = self.spool, None
            spool.close()
        return 0

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.head is not None:
            raise BadResponse("start_response called twice without exc_info")
        self.head = wsgi_head(status, headers)
        self.response_headers = headers
        return self.write

    def write(self, data):
        """The write() callable start_response returns."""
        if self.written is None:
            self.written = []
        self.written.append(body_bytes(data))


cdef object pull(Call call, object iterator):
    """The next piece to send: what write() gathered first, then the iterable's next item; DONE at end."""
    if call.written:
        piece = b"".join(call.written)
        call.written = None
        return piece
    return next(iterator, DONE)


cdef class WsgiConnection(AppAdapter):
    """The WSGI app's side of one connection."""

    cdef int request(self, str method, bytes url, bint http11, list headers, bint keep_alive) except -1:
        cdef WsgiApp shared = self.shared
        cdef Connection conn = self.conn
        cdef bytes name, value
        cdef str key
        raw_path, query = split_target(url)
        client = conn.client_address()
        environ = shared.base_environ.copy()
        if shared.proxy is not None:
            forwarded = shared.proxy.resolve(conn, headers)
            if forwarded is not None:
                client, environ["wsgi.url_scheme"] = forwarded
        environ["REQUEST_METHOD"] = method
        environ["PATH_INFO"] = shared.path_info(raw_path)
        environ["QUERY_STRING"] = latin1(query)
        environ["SERVER_PROTOCOL"] = "HTTP/1.1" if http11 else "HTTP/1.0"
        environ["RAW_URI"] = latin1(url)
        environ["REMOTE_ADDR"] = client[0] if client else ""
        environ["REMOTE_PORT"] = str(client[1]) if client else ""
        if conn.transport.secure:
            environ["wsgi.url_scheme"] = "https"
            environ["HTTPS"] = "on"
            environ.update(conn.transport.ssl_environ())
        for name, value in headers:
            key = environ_key(name)
            if key is None:
                continue
            if key in environ and key[0] == "H":  # a repeated header: its values joined, as RFC 9110 allows
                environ[key] = environ[key] + "," + latin1(value)
            else:
                environ[key] = latin1(value)
        cdef Call call = Call.__new__(Call)
        call.environ = environ
        call.keep_alive = keep_alive
        call.head_only = method == "HEAD"
        call.http10 = not http11
        call.started_at = conn.ctx.now
        self.receiving = call
        if shared.pool is not None:
            # The app reads the body while it arrives, in its own thread.
            call.stream = BodyStream(shared.loop, (<object>conn).set_reading)
            environ["wsgi.input"] = call.stream
            if self.running:
                self.waiting.append(call)
            else:
                self.running = True
                self.begin(call)
        return 0

    cdef int body(self, bytes data) except -1:
        if self.receiving.stream is not None:
            if self.receiving.stream.feed(data):
                self.conn.set_reading(False)  # the app reads slower than the client sends
            return 0
        return self.receiving.take(data)

    cdef int message_complete(self) except -1:
        cdef Call call = self.receiving
        cdef Connection conn = self.conn
        self.receiving = None
        if call.stream is not None:
            call.stream.end()
            return call.keep_alive
        call.environ["wsgi.input"] = call.body_input()
        if "CONTENT_LENGTH" not in call.environ:
            call.environ["CONTENT_LENGTH"] = str(call.size)
        if self.running or not call.keep_alive:
            self.waiting.append(call)
            if not self.running:
                self.running = True
                self.shared.loop.call_soon(self.next)
            return call.keep_alive
        # Nothing ahead of it and no pool: answer now, while the connection parses, so the answers to the
        # requests of one read leave together (as the built-in responder's do).
        outcome = self.answer(call)
        if isinstance(outcome, Streaming):
            self.running = True
            self.stream_soon(call, outcome)
            return call.keep_alive
        call.release()
        status, data, size = outcome
        conn.send_answer(data)
        self.answered(call, status, size, call.keep_alive)
        return call.keep_alive

    cdef int abandon(self) except -1:
        cdef Call call = self.receiving
        self.receiving = None
        if call.stream is None:
            return call.release()  # without --threads the app never saw it
        call.abandoned = True
        call.stream.end(complete=False)  # its app's next read raises
        if call in self.waiting:
            self.waiting.remove(call)
            return 0
        return call.head_sent

    cdef int connection_lost(self) except -1:
        cdef Call call
        for call in self.waiting:
            call.release()
            if call.stream is not None:
                call.stream.end(complete=False)
        if self.receiving is not None:
            self.receiving.release()
            if self.receiving.stream is not None:
                self.receiving.stream.end(complete=False)
        self.waiting.clear()
        return AppAdapter.connection_lost(self)

    def next(self) -> None:
        """Run the next waiting request, if the connection is still open."""
        if not self.waiting or self.conn.fd < 0:
            self.running = False
            return
        self.begin(self.waiting.popleft())

    cdef int begin(self, Call call) except -1:
        if self.shared.pool is None:
            return self.done(call, self.answer(call))
        # (A request the worker stops before a thread is free for is dropped with the pool's queue.)
        self.shared.pool.submit(self.answer_in_thread, call)
        return 0

    def answer_in_thread(self, Call call) -> None:
        """On a pool thread: run the app and hand its answer to the loop; keep a streamed one (Streaming)."""
        cdef WsgiApp shared = self.shared
        outcome = self.answer(call)
        if isinstance(outcome, Streaming):
            (<Streaming>outcome).requests = SimpleQueue()
            if not shared.adopt(outcome):
                close_result((<Streaming>outcome).result)
                return
        try:
            shared.loop.call_soon_threadsafe(self.answered_in_thread, call, outcome)
        except RuntimeError:
            pass  # the loop is closed: the worker has stopped (and asked every kept stream to close)
        if isinstance(outcome, Streaming):
            keep_stream(outcome, call, shared.loop)

    def answered_in_thread(self, Call call, outcome) -> None:
        self.done(call, outcome)

    cdef int done(self, Call call, object outcome) except -1:
        cdef Connection conn = self.conn
        if call.abandoned:  # the connection answered it with an error: the app's answer goes nowhere
            if isinstance(outcome, Streaming):
                close_stream(self.shared, outcome)
            return self.after(False)
        if isinstance(outcome, Streaming):
            self.stream_soon(call, outcome)
            return 0
        call.release()
        status, data, size = outcome
        if call.stream is not None:
            call.stream.drop()
        if conn.fd >= 0:
            conn.send_answer(data)
            conn.flush()
            self.answered(call, status, size, call.keep_alive)
        return self.after(call.keep_alive)

    cdef int after(self, bint keep_alive) except -1:
        if keep_alive:
            self.next()
        else:
            self.running = False
        return 0

    cdef object answer(self, Call call):
        """Run the app: (status, answer, size) when its whole answer is at hand (a list or tuple, at most
        STREAM_ABOVE bytes it declared in Content-Length, or a file), else a Streaming that stream() sends
        piece by piece. The answer is bytes, or a FileBody for sendfile. Runs in the loop or a pool thread."""
        cdef WsgiApp shared = self.shared
        cdef Streaming streaming = None
        cdef Head head
        cdef bytes payload
        cdef long long length
        cdef Py_ssize_t size
        result = None
        try:
            result = shared.app(call.environ, call.start_response)
            self.keeps_alive(call)
            if type(result) is FileWrapper and call.head is not None and not call.written:
                found = file_part(result)
                if found is not None:
                    return self.file_answer(call, *found)
            if not isinstance(result, (list, tuple)):
                length = call.head.length if call.head is not None else -1
                if length < 0 or length > STREAM_ABOVE:
                    streaming = Streaming.__new__(Streaming)
                    streaming.iterator = iter(result)
                    streaming.result = result
                    return streaming
            pieces = call.written or []
            for piece in result:
                if piece:
                    pieces.append(body_bytes(piece))
            if call.head is None:
                raise BadResponse("the app did not call start_response")
            head = call.head
            payload = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            size = PyBytes_GET_SIZE(payload)
            # HEAD and 304 declare the length of a body they do not carry (werkzeug sends none for them).
            if (head.length >= 0 and head.length != size
                    and (size or not (call.head_only or head.status == 304))):
                raise BadResponse(f"Content-Length {head.length} but {size} bytes of body")
            if bodiless(head.status):
                data = frame(head, shared.responder, head.length if head.status == 304 else -1, False,
                             call.keep_alive, None)
            else:
                # HEAD: the length the app declared, else that of the body it gave, else none.
                length = head.length if head.length >= 0 else size if size or not call.head_only else -1
                data = frame(head, shared.responder, length, False, call.keep_alive,
                             None if call.head_only else payload)
            return head.status, data, body_length(data)
        except Exception as exc:
            self.log_failure(call, exc)
            data = error_answer(shared.responder, 500, self.keeps_alive(call), call.head_only)
            return 500, data, body_length(data)
        finally:
            if streaming is None:
                close_result(result)

    cdef bint keeps_alive(self, Call call):
        """Whether call's answer keeps the connection: as the request asked, unless the worker now drains
        and it is the connection's last request (Connection.closes_for_drain)."""
        if call.keep_alive and self.conn.closes_for_drain():
            call.keep_alive = False
        return call.keep_alive

    def file_answer(self, Call call, OpenFile file, long long offset, long long length):
        cdef Head head = call.head
        if head.length >= 0:
            if head.length > length:
                raise BadResponse(f"Content-Length {head.length} but the file has {length} bytes left")
            length = head.length
        data = frame(head, self.shared.responder, length, False, call.keep_alive, None)
        if call.head_only or length == 0 or bodiless(head.status):
            return head.status, data, 0
        return head.status, FileBody(data, file, offset, length), length

    def log_failure(self, Call call, exc: Exception) -> None:
        environ = call.environ
        if isinstance(exc, OSError) and call.stream is not None and call.stream.cut_short:
            # Not the app's fault: the client left, or its body broke a limit (and got our error answer).
            log.info("the request body of %s %s was cut short", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return
        log.error("the app failed on %s %s: %s: %s", environ["REQUEST_METHOD"], environ["PATH_INFO"],
                  type(exc).__name__, exc, exc_info=not isinstance(exc, BadResponse))

    cdef int answered(self, Call call, int status, Py_ssize_t body_size, bint keep_alive) except -1:
        """The answer to call is out: to the access log, then to the connection's count and keep-alive."""
        cdef Connection conn = self.conn
        if conn.ctx.access_log is not None:
            environ = call.environ
            remote = environ.get("REMOTE_ADDR")  # as the proxy headers (or the app) left it
            conn.log_access(environ["REQUEST_METHOD"].encode("latin-1"), environ["RAW_URI"].encode("latin-1"),
                            environ["SERVER_PROTOCOL"][5:], status, body_size, call.started_at,
                            EnvironHeaders(environ), remote if type(remote) is str and remote else None,
                            call.response_headers)
        return conn.answered(status, call.started_at, keep_alive)

    def stream_soon(self, Call call, Streaming out) -> None:
        self.shared.streams.add(out)
        out.task = self.shared.loop.create_task(self.stream(call, out))

    async def stream(self, Call call, Streaming out):
        """Send a response as the app's iterable yields it: chunked unless the app gave a Content-Length
        (close-delimited for HTTP/1.0), waiting while the client is slow. Pieces are pulled in the loop, or
        on the pool with --threads, so a slow iterable holds up only its own connection there."""
        cdef WsgiApp shared = self.shared
        cdef Connection conn = self.conn
        cdef Head head
        cdef bint keep_alive = call.keep_alive, chunked = False, without_body
        cdef int status = 500
        cdef long long length, sent = 0
        try:
            piece = await self.pull(call, out)  # a generator app calls start_response only now
            keep_alive = self.keeps_alive(call)
            if call.head is None:
                raise BadResponse("the app did not call start_response")
            if piece is not DONE:
                piece = body_bytes(piece)  # checked before the head goes out: a wrong first piece gets a 500
            head = call.head
            status = head.status
            length = head.length
            without_body = call.head_only or bodiless(status)
            chunked = length < 0 and not without_body and not call.http10
            if length < 0 and not without_body and not chunked:
                keep_alive = False  # HTTP/1.0 without a length: the close ends the body
            # HEAD keeps the app's Content-Length: the length a GET would get.
            start = frame(head, shared.responder, -1 if bodiless(status) and status != 304 else length,
                          chunked, keep_alive, None)
            if not call.abandoned:
                call.head_sent = True
                conn.send(start)
            while piece is not DONE and not without_body and conn.fd >= 0 and not call.abandoned:
                if piece:
                    piece = body_bytes(piece)
                    if length >= 0 and sent + len(piece) > length:
                        raise BadResponse(f"more body than its Content-Length {length}")
                    sent += len(piece)
                    conn.send(chunk(piece) if chunked else piece)
                    waiter = self.wait_for_drain(shared.loop, shared.max_output)
                    if waiter is not None:
                        await waiter
                piece = await self.pull(call, out)
            if length >= 0 and sent != length and not without_body and conn.fd >= 0 and not call.abandoned:
                raise BadResponse(f"Content-Length {length} but {sent} bytes of body")
            # close() before the end of the body goes out, so a client that saw the end knows it ran.
            closed = close_stream(shared, out)
            if closed is not None:
                await closed
            if chunked and conn.fd >= 0 and not call.abandoned:
                conn.send(b"0\r\n\r\n")
        except Exception as exc:
            self.log_failure(call, exc)
            if not call.head_sent and conn.fd >= 0 and not call.abandoned:
                conn.send(error_answer(shared.responder, 500, keep_alive and self.keeps_alive(call),
                                       call.head_only))
            else:
                keep_alive = False  # cut short: only closing tells the client
        finally:
            close_stream(shared, out)  # (cut short, cancelled: its thread closes it without us waiting)
            call.release()
        if call.stream is not None:
            call.stream.drop()
        if call.abandoned:
            return self.after(False)
        if conn.fd >= 0:
            self.answered(call, status if call.head_sent else 500, sent, keep_alive)
        self.after(keep_alive and conn.fd >= 0)

    async def pull(self, Call call, Streaming out):
        if out.requests is None:
            return pull(call, out.iterator)
        pulled = self.shared.loop.create_future()
        out.requests.put((pulled, False))  # to the thread keeping the response
        return await pulled
