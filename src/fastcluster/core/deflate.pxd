cdef extern from "zlib.h":
    ctypedef struct z_stream:
        unsigned char *next_in  # (zlib.h declares it const only under ZLIB_CONST)
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out
        void *zalloc
        void *zfree
        void *opaque
        # After inflate(): +128 when it stopped between two blocks (waiting for the next block's header).
        int data_type


cdef class PerMessageDeflate:
    cdef:
        # The parameters agreed in the handshake.
        readonly bint server_no_context_takeover
        readonly bint client_no_context_takeover
        readonly int server_window_bits
        readonly int client_window_bits
        # The Sec-WebSocket-Extensions line of the 101.
        readonly bytes answer
        # zlib's streams, each made when first needed.
        z_stream compressor
        z_stream decompressor
        bint compressing
        bint decompressing
        # The message being decompressed ended its deflate stream (a block with BFINAL set): the rest of
        # its data is ignored and the next message starts a new stream.
        bint stream_ended

    cdef bytes compress(self, const char *data, Py_ssize_t length)
    cdef int decompress(self, const char *data, Py_ssize_t length, char **buffer, Py_ssize_t *capacity,
                        Py_ssize_t *used, Py_ssize_t limit) except -1
    cdef int end_message(self, char **buffer, Py_ssize_t *capacity, Py_ssize_t *used,
                         Py_ssize_t limit) except -1
