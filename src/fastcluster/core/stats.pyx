# The shared-memory stats block: one fixed-size record per worker slot in an anonymous mmap made before fork.
# Workers write their own record with plain stores (no syscall per request); the master reads every record
# for heartbeats and status.
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
    """A copy of one slot's record as a dict (for the master: heartbeats, status, metrics)."""
    cdef SlotStats *record = slot_record(block, slot)
    cdef SlotStats copy = record[0]
    return copy


def reset_slot(block, int slot) -> None:
    memset(slot_record(block, slot), 0, sizeof(SlotStats))
