# The per-slot record of the shared-memory stats block: workers store into it, the master reads it.
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

# Upper bounds (seconds) of the latency histogram buckets; the last bucket is +Inf.
cdef enum:
    LATENCY_BUCKETS = 12
    REQUEST_NOTE_SIZE = 80


cdef extern from *:
    """
    static const double FASTCLUSTER_LATENCY_BOUNDS[11] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0};
    """
    const double FASTCLUSTER_LATENCY_BOUNDS[11]


cdef struct SlotStats:
    uint64_t requests
    uint64_t bytes_in
    uint64_t bytes_out
    uint64_t connections_open
    uint64_t connections_total
    uint64_t client_errors
    uint64_t pid
    uint64_t state
    double heartbeat  # CLOCK_MONOTONIC seconds of the worker's last tick (system-wide, like time.monotonic())
    double started
    uint64_t status_classes[6]  # index = status // 100 (1xx..5xx; 0 unused)
    uint64_t latency[LATENCY_BUCKETS]  # counts per bucket (not cumulative)
    double latency_sum
    # The request the worker is answering (or answered last): method code, then the start of the target.
    uint64_t request_seq
    uint8_t request_method
    uint8_t request_note_length
    char request_note[REQUEST_NOTE_SIZE]
    # WebSockets open now (accepted, not closed yet) and their messages, received and sent.
    uint64_t websockets_open
    uint64_t websocket_messages


cdef SlotStats *slot_record(object block, int slot) except NULL


cdef inline void count_response(SlotStats *stats, int status, double seconds) noexcept nogil:
    """One answered request: its status class and latency bucket (plain stores, no clock read here)."""
    cdef int bucket = 0
    while bucket < LATENCY_BUCKETS - 1 and seconds > FASTCLUSTER_LATENCY_BOUNDS[bucket]:
        bucket += 1
    stats.requests += 1
    stats.status_classes[status // 100 if 1 <= status // 100 <= 5 else 0] += 1
    stats.latency[bucket] += 1
    stats.latency_sum += seconds


cdef inline void note_request(SlotStats *stats, int method, const char *target, Py_ssize_t length) noexcept nogil:
    """Remember which request the worker is on, for the log line of a heartbeat kill."""
    if length > REQUEST_NOTE_SIZE:
        length = REQUEST_NOTE_SIZE
    stats.request_method = <uint8_t>method
    memcpy(stats.request_note, target, length)
    stats.request_note_length = <uint8_t>length
    stats.request_seq += 1
