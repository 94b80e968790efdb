# The per-slot record of the shared-memory stats block: workers store into it, the master reads it.
from libc.stdint cimport uint64_t


cdef struct SlotStats:
    uint64_t requests
    uint64_t bytes_in
    uint64_t bytes_out
    uint64_t connections_open
    uint64_t connections_total
    uint64_t client_errors
    uint64_t pid
    uint64_t state
    double heartbeat
    double started


cdef SlotStats *slot_record(object block, int slot) except NULL
