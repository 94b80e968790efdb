# ASGI websocket (spec 2.4) over core/websocket.pyx: an upgrade request becomes a WebSocketExchange (an
# Exchange of core/asgi.pyx, so it runs on the connection's task runner and is logged and counted as any
# request) whose app gets websocket.connect, accepts with a subprotocol and headers or denies (403, or its
# own websocket.http.response), then receives and sends text and bytes until either side closes.
import logging

cimport cython
from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.object cimport PyTypeObject
from cpython.unicode cimport PyUnicode_AsUTF8String

from fastcluster.core.asgi cimport (
    DONE,
    NOTHING,
    AppRun,
    AsgiConnection,
    ConnectionRunner,
    Exchange,
    field,
    in_a_task,
)
from fastcluster.core.connection cimport Connection
from fastcluster.core.heads cimport error_answer
from fastcluster.core.websocket cimport OP_TEXT, WebSocket

from fastcluster.core.asgi import ClientDisconnected, Completed
from fastcluster.core.heads import BadResponse
from fastcluster.core.websocket import (
    HandshakeError,
    check_handshake,
    header_tokens,
    refusal,
    requested_subprotocols,
    switching_protocols,
)

log = logging.getLogger("fastcluster.app")

# Messages received and not yet taken by the app before we stop parsing the peer's frames.
DEF RECEIVE_QUEUE = 16
cdef dict CONNECT = {"type": "websocket.connect"}
cdef bytes TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

cdef extern from *:
    """
    /* The am_send slot (3.10+) of Receiving: its end is a return value (the message), not a
       StopIteration raised and caught. */
    static PyObject *(*fastcluster_receiving_step)(PyObject *, int *);
    #if PY_VERSION_HEX >= 0x030A0000
    static PySendResult fastcluster_receiving_send(PyObject *awaitable, PyObject *value, PyObject **result) {
        int finished = 0;
        *result = fastcluster_receiving_step(awaitable, &finished);
        if (*result == NULL) return PYGEN_ERROR;
        return finished ? PYGEN_RETURN : PYGEN_NEXT;
    }
    #endif
    static void fastcluster_give_receiving_slot(PyTypeObject *type) {
    #if PY_VERSION_HEX >= 0x030A0000
        if (type->tp_as_async != NULL) type->tp_as_async->am_send = fastcluster_receiving_send;
    #endif
    }
    """
    ctypedef object (*StepFunction)(object, int *)
    StepFunction fastcluster_receiving_step
    void fastcluster_give_receiving_slot(PyTypeObject *type)


cdef class AsgiWebSocket(WebSocket):
    """The frames of an accepted WebSocket, turned into the app's messages."""
    cdef WebSocketExchange exchange

    cdef int on_message(self, int opcode, bytes payload) except -1:
        if opcode == OP_TEXT:
            message = {"type": "websocket.receive", "text": payload.decode("utf-8")}
        else:
            message = {"type": "websocket.receive", "bytes": payload}
        self.exchange.incoming.append(message)
        return self.exchange.arrived()

    cdef bint wants_more(self) noexcept:
        return self.exchange.accepted and len(self.exchange.incoming) < RECEIVE_QUEUE

    cdef int on_closed(self) except -1:
        self.exchange.disconnected = True
        return self.exchange.wake()

    cdef int on_tick(self, double now) except -1:
        if not self.exchange.accepted:
            return 0  # the app has not answered the handshake yet: no pings
        return WebSocket.on_tick(self, now)


@cython.freelist(4)
cdef class Receiving:
    """What receive() returns: no coroutine per call. Stepped, it finishes with the next message, or
    yields the exchange's wake-up future while there is none."""
    cdef WebSocketExchange exchange

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, value):
        cdef int finished = 0
        result = receiving_step(self, &finished)
        if finished:
            raise StopIteration(result)
        return result

    def throw(self, exc, value=None, traceback=None):
        raise exc if value is None else value

    def close(self):
        pass


cdef object receiving_step(object awaitable, int *finished):
    cdef WebSocketExchange exchange = (<Receiving>awaitable).exchange
    message = exchange.next_message()
    if message is None:
        return exchange.park()
    finished[0] = 1
    return message


fastcluster_receiving_step = receiving_step
fastcluster_give_receiving_slot(<PyTypeObject *>Receiving)


cdef class WebSocketExchange(Exchange):
    """One WebSocket: the upgrade request's scope, the app's receive and send."""
    cdef:
        AsgiWebSocket protocol
        bytes accept_key
        list incoming
        bint connect_delivered
        bint accepted

    def receive(self):
        """The app's receive: an awaitable done at once with the next message, or waiting for one."""
        cdef Receiving receiving = Receiving.__new__(Receiving)
        receiving.exchange = self
        return receiving

    cdef object next_message(self):
        """The next message for the app, or None when there is none yet."""
        cdef AsgiWebSocket protocol = self.protocol
        if not self.connect_delivered:
            self.connect_delivered = True
            return CONNECT
        if self.incoming:
            message = self.incoming.pop(0)
            if protocol.holding and len(self.incoming) < RECEIVE_QUEUE and protocol.conn is not None:
                protocol.resume()  # the app caught up: parse the frames held back
                self.flush()
            return message
        if self.disconnected:
            return {"type": "websocket.disconnect", "code": protocol.close_code,
                    "reason": protocol.close_reason}
        return None

    cdef object park(self):
        """The future a receive() with nothing to give waits on: the same one until it is woken, so that
        the app stepped inside a read (arrived) goes back to waiting on what its task already waits on."""
        wakeup = self.wakeup
        if wakeup is None or wakeup.done():
            wakeup = self.wakeup = self.owner.shared.loop.create_future()
        wakeup._asyncio_future_blocking = True
        return wakeup

    cdef int arrived(self) except -1:
        """A message (or the end) is there for the app: step the app now, inside the read, when it waits
        for one in receive() as the connection's task; else wake the task that waits."""
        cdef AsgiConnection owner = self.owner
        cdef ConnectionRunner runner = owner.runner
        cdef AppRun run = <AppRun>self.task if type(self.task) is AppRun else None
        wakeup = self.wakeup
        if (run is None or runner is None or runner.current is not run or run.waiting_on is not NOTHING
                or wakeup is None or runner.task is None or runner.task._fut_waiter is not wakeup
                or wakeup.done() or in_a_task(owner.shared.loop)):
            return self.wake()
        yielded = owner.step_in_read(run)
        if yielded is wakeup:
            return 0  # waiting for the next message, as its task already is
        # It ended, or waits on something else: wake its task, which takes that from here.
        if yielded is DONE:
            runner.current = None
        else:
            run.waiting_on = yielded
        wakeup.set_result(None)
        return 0

    def send(self, message):
        cdef AsgiWebSocket protocol = self.protocol
        kind = message["type"]
        if kind == "websocket.send":
            if not self.accepted:
                raise BadResponse("websocket.send before websocket.accept")
            if self.disconnected or protocol.close_sent:
                raise ClientDisconnected("the WebSocket is closed")
            text = field(message, "text", None)
            if type(text) is str:
                protocol.send_message(True, PyUnicode_AsUTF8String(text))
            elif text is not None:
                protocol.send_message(True, text.encode("utf-8"))
            else:
                protocol.send_message(False, bytes(field(message, "bytes", None) or b""))
            return self.flushed()
        if kind == "websocket.accept":
            if self.accepted or self.response_started:
                raise BadResponse("websocket.accept after the handshake was answered")
            return self.accept(message.get("subprotocol"), message.get("headers") or ())
        if kind == "websocket.close":
            if not self.accepted:
                if self.response_started:
                    raise BadResponse("websocket.close after the handshake was answered")
                return self.deny(error_answer(self.owner.shared.responder, 403, False, False), 403)
            if self.disconnected:
                return self.flushed()
            reason = message.get("reason") or ""
            protocol.close(message.get("code", 1000), reason.encode("utf-8"))
            return self.flushed()
        if kind == "websocket.http.response.start" or kind == "websocket.http.response.body":
            if self.accepted:
                raise BadResponse(f"{kind} after websocket.accept")
            self.keep_alive = False  # the denial ends the connection
            return Exchange.send(self, dict(message, type=kind[10:]))
        raise BadResponse(f"unexpected message {kind!r}")

    cdef object accept(self, object subprotocol, object headers):
        cdef Connection conn = self.owner.conn
        extra = self.protocol.extensions
        if subprotocol is not None:
            extra += b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n"
        for name, value in headers:
            name = bytes(name)
            value = bytes(value)
            if not name or name.strip(TOKEN_CHARS) or b"\r" in value or b"\n" in value or b"\0" in value:
                raise BadResponse(f"invalid header {name!r}: {value!r}")
            extra += name + b": " + value + b"\r\n"
        responder = self.owner.shared.responder
        answer = switching_protocols(self.accept_key, responder.server_line + responder.date_line, extra)
        self.accepted = self.response_started = True
        self.status = 101
        self.write(answer)
        self.owner.finished(self, True)  # counted and logged as the 101 it is; the connection is the socket's
        self.protocol.opened()
        if self.protocol.holding:
            self.protocol.resume()
        return self.flushed()

    cdef object deny(self, bytes answer, int status):
        self.response_started = True
        self.status = status
        self.write(answer)
        self.finish(False)
        return self.flushed()

    cdef object flushed(self):
        """What send() returns: done, or the drain future while the client is slow to read."""
        self.flush()
        return self.owner.wait_for_drain(self.owner.shared.loop, self.owner.shared.max_output) or DONE_AWAITABLE

    cdef int flush(self) except -1:
        cdef Connection conn = self.owner.conn
        if conn.fd >= 0 and not self.owner.parsing:
            conn.flush()
        return 0

    cdef int app_ended(self, object exc) except -1:
        if not self.accepted:
            return Exchange.app_ended(self, exc)
        if exc is not None and not self.disconnected:
            log.error("the app failed on WebSocket %s: %s: %s", self.scope["path"], type(exc).__name__, exc,
                      exc_info=exc if not isinstance(exc, BadResponse) else None)
        if not self.protocol.close_sent and self.protocol.conn is not None:
            self.protocol.close(1011 if exc is not None else 1000)
            self.flush()
        return 0


DONE_AWAITABLE = Completed()


def websocket_exchange(AsgiConnection owner, str method, bint http11, list headers):
    """The exchange for a request that asks to upgrade: a WebSocketExchange with its protocol installed on
    the connection (frames are held until the app accepts), or a plain Exchange for an upgrade to another
    protocol. A WebSocket handshake that is not valid is answered here (400, or 426 for a version other
    than 13) and never reaches the app."""
    cdef Connection conn = owner.conn
    cdef WebSocketExchange exchange
    cdef AsgiWebSocket protocol
    try:
        accept_key = check_handshake(method, http11, headers)
        protocol = AsgiWebSocket(conn)
        protocol.negotiate(headers)
    except HandshakeError as error:
        if not any(name.lower() == b"upgrade" and b"websocket" in header_tokens(value)
                   for name, value in headers):
            return Exchange.__new__(Exchange)
        responder = owner.shared.responder
        return conn.refuse(error.status, refusal(error, responder.server_line + responder.date_line))
    exchange = WebSocketExchange.__new__(WebSocketExchange)
    exchange.accept_key = accept_key
    exchange.incoming = []
    exchange.protocol = protocol
    protocol.exchange = exchange
    conn.upgrade(exchange.protocol)
    return exchange


def websocket_scope(dict scope, list headers) -> None:
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    scope["subprotocols"] = requested_subprotocols(headers)
    extensions = {"websocket.http.response": {}}
    if "tls" in scope["extensions"]:
        extensions["tls"] = scope["extensions"]["tls"]
    scope["extensions"] = extensions
