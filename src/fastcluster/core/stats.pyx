# The shared-memory stats block: one fixed-size record per worker in an anonymous mmap made before fork.
# Workers write their own record with plain stores (no syscall per request); the master reads every record
# for heartbeats, status and metrics.
import mmap

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.string cimport memset

STATE_EMPTY = 0
STATE_BOOTING = 1
STATE_SERVING = 2
STATE_DRAINING = 3
STATE_NAMES = {STATE_EMPTY: "empty", STATE_BOOTING: "booting", STATE_SERVING: "serving",
               STATE_DRAINING: "draining"}

RECORD_SIZE = sizeof(SlotStats)
#: Upper bounds in seconds of the latency buckets; the last bucket (not listed) is +Inf.
LATENCY_BOUNDS = tuple(FASTCLUSTER_LATENCY_BOUNDS[i] for i in range(LATENCY_BUCKETS - 1))
#: Counters that add up over a slot's successive workers.
COUNTERS = ("requests", "bytes_in", "bytes_out", "connections_total", "client_errors", "latency_sum",
            "websocket_messages")
#: llhttp's method numbers, for the request a record notes.
METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL",
           "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT",
           "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH",
           "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE")


cdef SlotStats *slot_record(object block, int slot) except NULL:
    """The address of slot's record inside block; the mmap outlives every worker, so the pointer stays valid."""
    cdef Py_buffer view
    PyObject_GetBuffer(block, &view, PyBUF_WRITABLE)
    cdef char *base = <char *>view.buf
    cdef Py_ssize_t length = view.len
    PyBuffer_Release(&view)
    if slot < 0 or (slot + 1) * <Py_ssize_t>sizeof(SlotStats) > length:
        raise IndexError(f"slot {slot} is outside the stats block")
    return <SlotStats *>(base + slot * sizeof(SlotStats))


def new_block(int slots):
    """An anonymous shared mapping with room for `slots` records, all zero."""
    return mmap.mmap(-1, max(1, slots) * sizeof(SlotStats))


def read_slot(block, int slot) -> dict:
    """A copy of one record as plain Python values (for the master: heartbeats, status, metrics)."""
    cdef SlotStats *record = slot_record(block, slot)
    cdef SlotStats copy = record[0]
    cdef int length = min(copy.request_note_length, REQUEST_NOTE_SIZE)
    method = METHODS[copy.request_method] if copy.request_method < len(METHODS) else "?"
    return {
        "requests": copy.requests,
        "bytes_in": copy.bytes_in,
        "bytes_out": copy.bytes_out,
        "connections_open": copy.connections_open,
        "connections_total": copy.connections_total,
        "client_errors": copy.client_errors,
        "pid": copy.pid,
        "state": copy.state,
        "heartbeat": copy.heartbeat,
        "started": copy.started,
        "status_classes": [copy.status_classes[i] for i in range(1, 6)],
        "latency": [copy.latency[i] for i in range(LATENCY_BUCKETS)],
        "latency_sum": copy.latency_sum,
        "websockets_open": copy.websockets_open,
        "websocket_messages": copy.websocket_messages,
        "request": (f"{method} {copy.request_note[:length].decode('latin-1')}" if copy.request_seq else ""),
    }


def reset_slot(block, int slot) -> None:
    memset(slot_record(block, slot), 0, sizeof(SlotStats))
