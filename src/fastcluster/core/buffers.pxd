# Growing the hot path's malloc'd byte buffers (the worker's output buffer, WebSocket input and messages,
# the inflater's output, the deflater's scratch), inline in C: one realloc policy instead of one per
# module, and no Python object.
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdlib cimport realloc


cdef inline int grow(char **buffer, Py_ssize_t *capacity, Py_ssize_t wanted,
                     Py_ssize_t most=PY_SSIZE_T_MAX, Py_ssize_t first=4096) except -1:
    """Make buffer hold wanted bytes: its capacity doubled (from first when it has none) until it does, but
    never past most. MemoryError when realloc fails, the buffer then as it was."""
    if wanted <= capacity[0]:
        return 0
    cdef Py_ssize_t size = capacity[0] or first
    while size < wanted:
        size *= 2
    size = min(size, most)
    cdef char *grown = <char *>realloc(buffer[0], size)
    if grown == NULL:
        raise MemoryError()
    buffer[0] = grown
    capacity[0] = size
    return 0
