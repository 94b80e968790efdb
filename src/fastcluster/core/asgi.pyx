# The ASGI 3 HTTP exchange: turns the requests one connection parses into scopes, runs the app for each
# (in a fresh context, as the connection's one long-lived task, its first step at once inside the parse;
# pipelined requests wait their turn), streams bodies both ways with flow control, and frames what the
# app sends: Content-Length or chunked, HEAD, HTTP/1.0, the pathsend and trailers extensions. Lifespan is
# plain Python (fastcluster.app.asgi).
import logging
import os
import stat
import asyncio.tasks
from asyncio import Task
from asyncio.tasks import _enter_task as enter_task
from asyncio.tasks import _leave_task as leave_task
from asyncio.tasks import current_task
from collections.abc import Coroutine
from urllib.parse import unquote

from cpython.contextvars cimport PyContext_Copy, PyContext_CopyCurrent, PyContext_Enter, PyContext_Exit
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_CheckExact, PyDict_Copy, PyDict_GetItemWithError, PyDict_New
from cpython.object cimport PyObject_Call, PyTypeObject
from cpython.ref cimport Py_DECREF, PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp

from fastcluster.core.connection cimport Connection, split_target
from fastcluster.core.forwarded cimport ProxyHeaders
from fastcluster.core.heads cimport Head, asgi_head, bodiless, body_bytes, chunk, error_answer, frame
from fastcluster.core.static cimport FileBody, OpenFile

from fastcluster.core.heads import BadResponse

cdef extern from "Python.h":
    bint PyCoro_CheckExact(object candidate)
    bint PyUnicode_CheckExact(object candidate)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    int PyUnicode_KIND(object text)
    void *PyUnicode_DATA(object text)
    object bind_method "PyMethod_New"(object function, object instance)


log = logging.getLogger("fastcluster.app")

ASGI = {"version": "3.0", "spec_version": "2.4"}
# A request's scope gets copies of these (a copy of a small dict is cheaper than building it key by key).
cdef dict ASGI_TEMPLATE = ASGI.copy()
cdef dict EXTENSIONS = {"http.response.pathsend": {}, "http.response.trailers": {}}
# Request body buffered for an app that has not asked for it yet, before we stop reading the socket.
DEF BODY_BUFFER = 262144
# A body this small leaves in one allocation with its head; larger ones are sent by reference.
DEF COPY_BODY_BELOW = 16384


class ClientDisconnected(OSError):
    """send() after the client went away (an OSError, as uvicorn's: apps stop streaming on it)."""


cdef object field(object message, str key, object default):
    """message.get(key, default), without the method call for the plain dicts apps send."""
    cdef PyObject *found
    if PyDict_CheckExact(message):
        found = PyDict_GetItemWithError(message, key)  # a str key's hash is cached: it cannot fail
        return <object>found if found != NULL else default
    return message.get(key, default)


cdef inline bint is_text(object value, str wanted):
    """value == wanted: by identity when the app's literal is ours, else by length first (the message types
    differ in length), then bytes."""
    if value is wanted:
        return True
    if not PyUnicode_CheckExact(value):
        return value == wanted
    cdef Py_ssize_t length = PyUnicode_GET_LENGTH(value)
    return (length == PyUnicode_GET_LENGTH(wanted) and PyUnicode_KIND(value) == PyUnicode_KIND(wanted)
            and memcmp(PyUnicode_DATA(value), PyUnicode_DATA(wanted), length * PyUnicode_KIND(value)) == 0)


cdef str decode_path(bytes raw_path):
    """The percent-decoded UTF-8 path ASGI wants; bytes that are not UTF-8 become U+FFFD, as in uvicorn (a
    lone surrogate would make every encode() of the path raise). raw_path keeps them exact."""
    if memchr(PyBytes_AS_STRING(raw_path), c'%', PyBytes_GET_SIZE(raw_path)) == NULL:
        return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw_path), PyBytes_GET_SIZE(raw_path), "replace")
    return unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="replace")


cdef class AsgiApp:
    """What every connection of a worker shares: the app, the loop, the addresses, the lifespan state."""

    def __init__(self, app, loop, Responder responder, *, root_path: str = "", server=None,
                 Py_ssize_t max_output=256 * 1024, ProxyHeaders proxy=None):
        self.app = app
        self.proxy = proxy
        self.loop = loop
        self.responder = responder
        self.root_path = root_path
        self.raw_root_path = root_path.encode("utf-8")
        self.state = {}
        self.max_output = max_output
        # Named, so that no name is formatted for each task.
        self.task_options = {"loop": loop, "name": "asgi"}
        # Every request's app runs in a fresh copy of this (the worker's context as the app was loaded).
        self.context = PyContext_CopyCurrent()
        self.scope_template = {
            "type": "http", "asgi": None, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/", "raw_path": b"/", "query_string": b"", "root_path": root_path, "headers": [],
            "client": None, "server": server, "state": None, "extensions": None,
        }

    cdef object new_task(self, object coroutine):
        # Task's keyword arguments are one dict made once, which Task.__init__ only reads.
        return PyObject_Call(Task, (coroutine,), self.task_options)

    def adapter(self, Connection conn) -> AsgiConnection:
        """The app's side of a new connection (the worker's connection factory calls it)."""
        cdef AsgiConnection adapter = AsgiConnection.__new__(AsgiConnection)
        adapter.shared = self
        adapter.exchanges = []
        return adapter


cdef class Exchange:
    """One request and its response; its receive and send are what the app gets."""

    cdef int deliver(self, bytes data) except -1:
        if self.complete:
            return 0  # answered already: the rest of a body the app did not read is dropped
        if self.body is None:
            self.body = [data]
        else:
            self.body.append(data)
        self.buffered += PyBytes_GET_SIZE(data)
        if self.buffered > BODY_BUFFER:
            self.owner.conn.set_reading(False)  # the app reads slower than the client sends
        return self.wake()

    cdef int wake(self) except -1:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)
        return 0

    async def receive(self):
        cdef Connection conn
        while True:
            if self.body is not None:
                data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = None
                conn = self.owner.conn
                if self.buffered > BODY_BUFFER and conn.fd >= 0:
                    conn.set_reading(True)
                self.buffered = 0
                self.end_delivered = not self.more_body
                return {"type": "http.request", "body": data, "more_body": self.more_body}
            if not self.more_body and not self.end_delivered:
                self.end_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            self.wakeup = self.owner.shared.loop.create_future()
            await self.wakeup
            self.wakeup = None

    def send(self, message):
        """The app's send: the message is framed and written at once; what it returns is awaited only
        while the client is slow to read (a plain awaitable, not a coroutine, to spare one per message)."""
        if self.disconnected:
            raise ClientDisconnected("the client has gone away")
        kind = message["type"]
        if is_text(kind, "http.response.body"):
            waiter = self.send_body(field(message, "body", b""), field(message, "more_body", False))
        elif is_text(kind, "http.response.start"):
            if self.response_started:
                raise BadResponse("http.response.start sent twice")
            self.response_headers = field(message, "headers", ())
            self.head = asgi_head(message["status"], self.response_headers)
            self.status = self.head.status
            self.declared = self.head.length
            self.trailers = bool(field(message, "trailers", False))
            self.response_started = True
            return COMPLETED
        elif kind == "http.response.pathsend":
            waiter = self.send_file(message["path"])
        elif kind == "http.response.trailers":
            waiter = self.send_trailers(field(message, "headers", ()), field(message, "more_trailers", False))
        else:
            raise BadResponse(f"unexpected message {kind!r}")
        return COMPLETED if waiter is None else waiter

    cdef object send_body(self, object body, bint more):
        """Frame and write one body message; the drain future to wait on when the client is slow."""
        cdef bytes data = body_bytes(body)
        cdef Head head = self.head
        cdef long long length
        cdef bint without_body, sends_body, with_head
        if not self.response_started or self.body_ended:
            raise BadResponse("http.response.body outside a response")
        if self.declared >= 0 and self.body_sent + PyBytes_GET_SIZE(data) > self.declared:
            raise BadResponse(f"more body than its Content-Length {self.declared}")
        self.body_sent += PyBytes_GET_SIZE(data)
        if (not more and self.declared >= 0 and self.body_sent < self.declared and not self.head_only
                and not bodiless(self.status)):
            # Checked before the head goes out, so that a whole answer too short for its length gets a 500.
            raise BadResponse(f"Content-Length {self.declared} but {self.body_sent} bytes of body")
        if head is not None:
            self.head = None
            self.end_if_draining()
            length = head.length
            without_body = bodiless(head.status)
            if without_body and head.status != 304:
                length = -1  # no Content-Length on 1xx and 204 (RFC 9110 8.6)
            elif length < 0 and not without_body:
                if self.trailers and not self.http10 and not self.head_only:
                    self.chunked = True
                elif not more:
                    length = PyBytes_GET_SIZE(data)
                elif self.http10:
                    self.keep_alive = False  # HTTP/1.0 has no chunked coding: the close ends the body
                else:
                    self.chunked = not self.head_only
            sends_body = not (self.head_only or without_body)
            with_head = sends_body and not self.chunked and PyBytes_GET_SIZE(data) < COPY_BODY_BELOW
            self.write(frame(head, self.owner.shared.responder, length, self.chunked, self.keep_alive,
                             data if with_head else None))
            if not sends_body:
                self.head_only = True  # nothing of the body is sent from now on
            elif not with_head and PyBytes_GET_SIZE(data):
                self.write(chunk(data) if self.chunked else data)
        elif PyBytes_GET_SIZE(data) and not self.head_only:
            self.write(chunk(data) if self.chunked else data)
        if more:
            return self.owner.wait_for_drain(self.owner.shared.loop, self.owner.shared.max_output)
        self.body_ended = True
        if self.trailers:
            return None  # the response ends with the trailers message
        if self.chunked:
            self.write(b"0\r\n\r\n")
        self.finish(self.keep_alive)
        return None

    cdef object send_file(self, object path):
        """http.response.pathsend: the file at path is the whole body, sent by sendfile."""
        cdef Head head = self.head
        if head is None or not self.response_started:
            raise BadResponse("http.response.pathsend outside a response, or after its body began")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise BadResponse(f"pathsend needs an absolute path, not {path!r}")
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):  # a directory has no bytes to send; a FIFO would block open()
                raise BadResponse(f"pathsend: {path} is not a regular file")
            file = OpenFile(os.fsencode(path), info, True)
        except OSError as exc:
            raise BadResponse(f"pathsend cannot open {path}: {exc.strerror}") from None
        if self.declared >= 0 and self.declared != file.size:
            raise BadResponse(f"Content-Length {self.declared} but the file has {file.size} bytes")
        self.head = None  # only now: until the head is sent, a failure still gets its 500
        self.body_ended = True
        self.end_if_draining()
        data = frame(head, self.owner.shared.responder, file.size, False, self.keep_alive, None)
        if self.head_only or bodiless(head.status) or file.size == 0:
            self.write(data)
        else:
            self.sent += PyBytes_GET_SIZE(data) + file.size
            self.body_sent = file.size
            self.owner.conn.send_answer(FileBody(data, file, 0, file.size))
            if not self.owner.parsing:
                self.owner.conn.flush()
        if self.trailers:
            return None
        self.finish(self.keep_alive)
        return None

    cdef object send_trailers(self, object headers, bint more):
        """Trailer fields after a chunked body (dropped when the body was not chunked)."""
        if not self.trailers or not self.body_ended or self.complete:
            raise BadResponse("http.response.trailers without trailers announced, or before the body ended")
        cdef Head fields = asgi_head(200, headers)
        if self.chunked:
            if not self.trailer_started:
                self.write(b"0\r\n")
                self.trailer_started = True
            if fields.lines:
                self.write(fields.lines)
        if more:
            return None
        if self.chunked:
            self.write(b"\r\n")
        self.finish(self.keep_alive)
        return None

    cdef int end_if_draining(self) except -1:
        """As the head is framed: the answer closes the connection if the worker drains meanwhile."""
        if self.keep_alive and self.owner.conn.closes_for_drain():
            self.keep_alive = False
        return 0

    cdef int write(self, bytes data) except -1:
        cdef Connection conn = self.owner.conn
        self.sent += PyBytes_GET_SIZE(data)
        if conn.fd < 0:
            return 0
        if self.owner.parsing:
            return conn.write_answer(data)
        return conn.send(data)

    cdef int finish(self, bint keep_alive) except -1:
        self.complete = True
        self.wake()
        return self.owner.finished(self, keep_alive)

    cdef int app_ended(self, object exc) except -1:
        """The app's coroutine for this request returned (exc None) or raised exc."""
        cdef AsgiConnection owner = self.owner
        if exc is not None:
            if self.disconnected:
                log.info("the client left during %s %s", self.scope["method"], self.scope["path"])
                return 0
            owner.app_failed(self, f"{type(exc).__name__}: {exc}", exc)
        elif not self.response_started and not self.disconnected:
            owner.app_failed(self, "the app returned without sending a response", None)
        elif not self.complete and not self.disconnected:
            log.error("the app returned before finishing its response to %s %s; closing the connection",
                      self.scope["method"], self.scope["path"])
            self.finish(False)
        return 0


cdef extern from *:
    """
    /* One step of a coroutine: 0 it yielded (*result), 1 it returned, -1 it raised (the error is set). */
    static int fastcluster_step(PyObject *coro, PyObject *value, PyObject **result) {
    #if PY_VERSION_HEX >= 0x030A0000
        PySendResult status = PyIter_Send(coro, value, result);
        if (status == PYGEN_RETURN) { Py_CLEAR(*result); return 1; }
        return status == PYGEN_NEXT ? 0 : -1;
    #else
        *result = PyObject_CallMethod(coro, "send", "O", value);
        if (*result != NULL) return 0;
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) { PyErr_Clear(); return 1; }
        return -1;
    #endif
    }

    /* The am_send slot (3.10+) of the objects asyncio Tasks step here: a Task steps them as it steps a
       native coroutine, and their end is a return value, not a StopIteration raised and caught. */
    static PyObject *(*fastcluster_resume)(PyObject *, PyObject *);
    static PyObject *fastcluster_done;
    #if PY_VERSION_HEX >= 0x030A0000
    static PySendResult fastcluster_send(PyObject *coro, PyObject *value, PyObject **result) {
        PyObject *yielded = fastcluster_resume(coro, value);
        if (yielded == NULL) { *result = NULL; return PYGEN_ERROR; }
        if (yielded == fastcluster_done) {
            Py_DECREF(yielded);
            Py_INCREF(Py_None);
            *result = Py_None;
            return PYGEN_RETURN;
        }
        *result = yielded;
        return PYGEN_NEXT;
    }
    #endif
    static void fastcluster_give_send_slot(PyTypeObject *type) {
    #if PY_VERSION_HEX >= 0x030A0000
        if (type->tp_as_async != NULL) type->tp_as_async->am_send = fastcluster_send;
    #endif
    }
    """
    ctypedef object (*ResumeFunction)(object, object)
    int fastcluster_step(object coro, object value, PyObject **result) except? -1
    ResumeFunction fastcluster_resume
    PyObject *fastcluster_done
    void fastcluster_give_send_slot(PyTypeObject *type)


# asyncio's map of each loop to its current task (a dict from 3.9 to 3.13): one lookup, where the Python
# function current_task() costs a frame per request before 3.12. None: ask current_task().
_current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
cdef dict CURRENT_TASKS = _current_tasks if type(_current_tasks) is dict else None


cdef bint in_a_task(object loop) except -1:
    if CURRENT_TASKS is not None:
        return PyDict_GetItemWithError(CURRENT_TASKS, loop) != NULL
    return current_task(loop) is not None


DONE = object()
NOTHING = object()
# The app's receive and send for an exchange are bound from these, without a lookup on the type.
cdef object RECEIVE = Exchange.receive
cdef object SEND = Exchange.send


cdef AppRun app_run(Exchange exchange):
    """The app called for the exchange's request, in a fresh copy of the worker's context."""
    cdef AsgiApp shared = exchange.owner.shared
    cdef AppRun run = AppRun.__new__(AppRun)
    run.exchange = exchange
    run.context = PyContext_Copy(shared.context)
    run.waiting_on = NOTHING
    try:
        if type(exchange) is Exchange:
            coro = shared.app(exchange.scope, bind_method(RECEIVE, exchange), bind_method(SEND, exchange))
        else:  # a WebSocket (core/asgi_websocket.pyx)
            coro = shared.app(exchange.scope, exchange.receive, exchange.send)
        run.coro = coro if PyCoro_CheckExact(coro) else coro.__await__()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        run.error = error  # answered at its first step, as an error raised by a coroutine would be
    return run


cdef class Steppable:
    """The coroutine protocol over resume(), for the asyncio Task that drives the object."""

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        yielded = self.resume(None, None)
        if yielded is DONE:
            raise StopIteration
        return yielded

    def send(self, value):
        yielded = self.resume(value, None)
        if yielded is DONE:
            raise StopIteration
        return yielded

    def throw(self, exc, value=None, traceback=None):
        yielded = self.resume(None, exc if value is None else value)
        if yielded is DONE:
            raise StopIteration
        return yielded

    def close(self):
        pass

    cdef object resume(self, object value, object error):
        raise NotImplementedError


cdef class AppRun(Steppable):
    """One request's app: its coroutine stepped directly, in the request's own context, and how it ended
    handed to the exchange (a 500, a cut response, a log line)."""

    def close(self):
        if self.coro is not None:
            self.coro.close()

    cdef object resume(self, object value, object error):
        """One step of the app (value sent in, or error thrown in): what it yielded, or DONE once it ended."""
        cdef PyObject *result = NULL
        cdef int status
        if self.waiting_on is not NOTHING:
            # It yielded this in its first step, before a Task drove it: the Task waits on it now.
            waiting_on, self.waiting_on = self.waiting_on, NOTHING
            if error is None:
                return waiting_on
            if waiting_on is not None:
                waiting_on.cancel()
        if self.coro is None:
            self.ended(self.error)
            return DONE
        PyContext_Enter(self.context)
        try:
            if error is None:
                status = fastcluster_step(self.coro, value, &result)
            else:
                try:
                    yielded = self.coro.throw(error)
                    status = 0
                except StopIteration:
                    status = 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self.ended(exc)
            return DONE
        finally:
            PyContext_Exit(self.context)
        if status == 1:
            self.ended(None)
            return DONE
        if error is None:
            yielded = <object>result
            Py_DECREF(yielded)  # the new reference fastcluster_step handed over; yielded holds its own
        return yielded

    cdef int ended(self, object error) except -1:
        # Let go of the exchange and the coroutine: the exchange holds this object.
        exchange = self.exchange
        self.exchange = self.coro = self.error = None
        return (<Exchange>exchange).app_ended(error)


cdef class ConnectionRunner(Steppable):
    """The coroutine of a connection's one long-lived Task, which is the current task of every request
    of the connection: a request's app runs its first step at once (inside the parse, so its answer
    leaves with the read's one send) and, if it has to wait, the runner's Task drives it from there on.
    No Task is made per request. While a request's app still runs when the next one starts (work after
    its response), the next one gets a Task of its own."""

    def close(self):
        if self.current is not None:
            self.current.close()

    cdef int take(self, AppRun run) except -1:
        """Drive run from its next step on."""
        self.current = run
        return self.wake()

    cdef int stop(self) except -1:
        """End the Task once the request it drives (if any) has ended: the connection is gone."""
        self.stopping = True
        return self.wake()

    cdef int wake(self) except -1:
        idle = self.idle
        if idle is not None:
            self.idle = None
            if not idle.done():
                idle.set_result(None)
        return 0

    cdef object resume(self, object value, object error):
        cdef AppRun run
        while True:
            run = self.current
            if run is None:
                if error is not None:
                    # Its task was cancelled while none of its requests ran: no app's to take.
                    uncancel = getattr(self.task, "uncancel", None)
                    if uncancel is not None:
                        uncancel()
                    error = None
                if self.stopping:
                    self.task = None
                    return DONE
                idle = self.idle = self.loop.create_future()
                idle._asyncio_future_blocking = True
                return idle
            yielded = run.resume(value, error)
            if yielded is not DONE:
                return yielded
            self.current = None
            value = error = None


cdef class Completed(Steppable):
    """An awaitable that is already done (with None): what send() returns while the client keeps up."""

    cdef object resume(self, object value, object error):
        if error is not None:
            raise error
        return DONE


cdef Completed COMPLETED = Completed()


def websocket_exchange(AsgiConnection owner, str method, bint http11, list headers):
    """core/asgi_websocket.pyx's exchange for a request that asks to upgrade, imported when first needed
    (that module builds on this one)."""
    global websocket_exchange, websocket_scope
    from fastcluster.core.asgi_websocket import websocket_exchange, websocket_scope
    return websocket_exchange(owner, method, http11, headers)


def websocket_scope(dict scope, list headers):
    global websocket_exchange, websocket_scope
    from fastcluster.core.asgi_websocket import websocket_exchange, websocket_scope
    return websocket_scope(scope, headers)


cdef object resume_steppable(object steppable, object value):
    return (<Steppable>steppable).resume(value, None)


fastcluster_resume = resume_steppable
fastcluster_done = <PyObject *>DONE
fastcluster_give_send_slot(<PyTypeObject *>AppRun)
fastcluster_give_send_slot(<PyTypeObject *>ConnectionRunner)
fastcluster_give_send_slot(<PyTypeObject *>Completed)
Coroutine.register(Steppable)


cdef class AsgiConnection(AppAdapter):
    """The ASGI app's side of one connection."""

    cdef int request(self, str method, bytes url, bint http11, list headers, bint keep_alive) except -1:
        cdef AsgiApp shared = self.shared
        cdef Connection conn = self.conn
        raw_path, query = split_target(url)
        cdef Exchange exchange = (Exchange.__new__(Exchange) if not conn.upgrade_asked else
                                  websocket_exchange(self, method, http11, headers))
        exchange.owner = self
        # A copy of a dict with the same keys is a block copy: cheaper than building one key by key.
        cdef dict scope = shared.scope_template.copy()
        if not http11:
            scope["http_version"] = "1.0"
        scope["method"] = method
        scope["path"] = shared.root_path + decode_path(raw_path) if shared.root_path else decode_path(raw_path)
        scope["raw_path"] = shared.raw_root_path + raw_path if shared.root_path else raw_path
        scope["query_string"] = query
        scope["headers"] = headers
        # Each request's own: a middleware that changes them must not change them for the requests after it.
        scope["asgi"] = PyDict_Copy(ASGI_TEMPLATE)
        cdef dict extensions = PyDict_Copy(EXTENSIONS)
        extensions["http.response.pathsend"] = PyDict_New()
        extensions["http.response.trailers"] = PyDict_New()
        scope["extensions"] = extensions
        client = conn.client_address()
        if conn.transport.secure:
            scope["scheme"] = "https"
            extensions["tls"] = conn.transport.tls_extension()
        if shared.proxy is not None:
            forwarded = shared.proxy.resolve(conn, headers)
            if forwarded is not None:
                client, scope["scheme"] = forwarded
        scope["client"] = client
        scope["state"] = shared.state.copy()
        exchange.scope = scope
        exchange.more_body = True
        exchange.keep_alive = keep_alive
        exchange.head_only = is_text(method, "HEAD")
        exchange.http10 = not http11
        exchange.started_at = conn.ctx.now
        exchange.declared = -1
        if type(exchange) is not Exchange:
            websocket_scope(scope, headers)
            exchange.keep_alive = True  # the parser goes on to the upgrade, which hands the socket over
        self.exchanges.append(exchange)
        self.receiving = exchange
        if len(self.exchanges) == 1 and (conn.chunked or conn.content_length > 0):
            self.start(exchange)  # the app may read the body as it arrives
        return 0

    cdef int body(self, bytes data) except -1:
        return self.receiving.deliver(data)

    cdef int message_complete(self) except -1:
        cdef Exchange exchange = self.receiving
        cdef bint keep_alive = exchange.keep_alive
        exchange.more_body = False
        self.receiving = None  # its run holds it from here on: an idle connection keeps no request
        exchange.wake()
        if exchange.task is None and self.exchanges[0] is exchange:
            self.start(exchange)
        return keep_alive

    cdef int abandon(self) except -1:
        cdef Exchange exchange = self.receiving
        cdef bint began = exchange.response_started and exchange.head is None
        # Its app reads a disconnect, and whatever it sends now raises: the connection answers for it.
        exchange.disconnected = True
        exchange.wake()
        if exchange.task is None:
            self.exchanges.remove(exchange)
        return began

    cdef int start(self, Exchange exchange) except -1:
        cdef AsgiApp shared = self.shared
        cdef AppRun run = app_run(exchange)
        cdef ConnectionRunner runner = self.runner
        exchange.task = run
        if runner is None:
            runner = self.runner = ConnectionRunner.__new__(ConnectionRunner)
            runner.loop = shared.loop
            runner.task = shared.new_task(runner)
        if runner.current is not None or runner.stopping:
            exchange.task = shared.new_task(run)
            return 0
        if in_a_task(shared.loop):
            return runner.take(run)  # inside some task's step: the runner takes its first step
        # Its first step now: an app that does not wait answers inside the parse.
        yielded = self.step_in_read(run)
        if yielded is DONE:
            return 0
        run.waiting_on = yielded
        if runner.current is None:
            return runner.take(run)
        # A later request was given to the runner while this app ran: it goes on in a Task of its own.
        exchange.task = shared.new_task(run)
        return 0

    cdef object step_in_read(self, AppRun run):
        """Step an app inside the read, as the connection's task (its runner's), what it sends written to
        leave with the read's output; returns what the step yielded (DONE once the app has ended)."""
        cdef object loop = self.shared.loop
        enter_task(loop, self.runner.task)
        self.parsing = True
        try:
            return run.resume(None, None)
        finally:
            self.parsing = False
            leave_task(loop, self.runner.task)

    cdef int idle(self) except -1:
        """End the runner's Task (the next request starts another): an idle connection holds no Task."""
        if self.runner is not None and self.runner.current is None and not self.exchanges:
            self.runner.stop()
            self.runner = None
        return 0

    cdef int connection_lost(self) except -1:
        cdef Exchange exchange
        for exchange in self.exchanges:
            exchange.disconnected = True
            exchange.wake()
        if self.runner is not None:
            self.runner.stop()
        return AppAdapter.connection_lost(self)

    def app_failed(self, Exchange exchange, str reason, exc) -> None:
        log.error("the app failed on %s %s: %s", exchange.scope["method"], exchange.scope["path"], reason,
                  exc_info=exc if exc is not None and not isinstance(exc, BadResponse) else None)
        if exchange.disconnected or exchange.complete:
            return
        if exchange.response_started and exchange.head is None:
            self.finished(exchange, False)  # too late for a 500: cut the response short
            return
        exchange.response_started = True
        exchange.head = None
        exchange.status = 500
        exchange.end_if_draining()
        exchange.write(error_answer(self.shared.responder, 500, exchange.keep_alive, exchange.head_only))
        exchange.finish(exchange.keep_alive)

    cdef int log_access(self, Exchange exchange) except -1:
        scope = exchange.scope
        target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
        client = scope["client"]
        self.conn.log_access(scope["method"].encode("latin-1"), target, scope["http_version"], exchange.status,
                             0 if exchange.head_only else exchange.body_sent, exchange.started_at,
                             dict(scope["headers"]),
                             str(client[0]) if type(client) is tuple and client else None,
                             exchange.response_headers)
        return 0

    cdef int finished(self, Exchange exchange, bint keep_alive) except -1:
        cdef Connection conn = self.conn
        exchange.complete = True
        if self.exchanges and self.exchanges[0] is exchange:
            del self.exchanges[0]  # a short list: apps that answer at once never queue more than one
        if exchange.buffered > BODY_BUFFER and conn.fd >= 0:
            conn.set_reading(True)  # reading paused for a body the app did not read: drop it, read on
        exchange.body = None
        exchange.buffered = 0
        if conn.fd >= 0:
            if conn.ctx.access_log is not None:
                self.log_access(exchange)
            conn.answered(exchange.status, exchange.started_at, keep_alive)
        if self.exchanges and keep_alive:
            self.start(self.exchanges[0])
        return 0
