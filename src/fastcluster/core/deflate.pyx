# RFC 7692 permessage-deflate for core/websocket.pyx: the handshake's negotiation (the client's offers in
# Sec-WebSocket-Extensions, taken or declined as the websockets library's server does) and, per
# connection, zlib's raw deflate streams called from C: messages compressed with a sync flush, received
# ones inflated piece by piece into a buffer that never grows past the message size limit, with or without
# context takeover each way.
import re

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free

from fastcluster.core.buffers cimport grow

cdef extern from "zlib.h":
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_MEM_ERROR, Z_NO_FLUSH, Z_SYNC_FLUSH
    int Z_DEFLATED, Z_DEFAULT_COMPRESSION, Z_DEFAULT_STRATEGY
    int deflateInit2(z_stream *stream, int level, int method, int window_bits, int mem_level, int strategy)
    int deflate(z_stream *stream, int flush) nogil
    int deflateReset(z_stream *stream)
    int deflateEnd(z_stream *stream)
    unsigned long deflateBound(z_stream *stream, unsigned long source_length)
    int inflateInit2(z_stream *stream, int window_bits)
    int inflate(z_stream *stream, int flush) nogil
    int inflateReset(z_stream *stream)
    int inflateEnd(z_stream *stream)

#: The largest LZ77 windows we agree to, ours and the client's: 4 KiB, the websockets library's server
#: default, so a WebSocket's streams hold tens of KiB rather than the 300 KiB of 32 KiB windows.
SERVER_WINDOW_BITS = 12
CLIENT_WINDOW_BITS = 12
#: The inflater's window when the client did not offer to limit its own.
DEF WHOLE_WINDOW_BITS = 15
#: zlib's memory level for the compressor (1-9; its default, 8, takes 128 KiB for the hash tables alone).
DEF MEM_LEVEL = 5
#: zlib counts in unsigned int: larger pieces are fed in turns.
DEF PIECE = 1 << 30
#: The compressor's output buffer (one per worker) is freed after a message that made it larger than this.
DEF SCRATCH_KEPT = 1 << 20
# The end of a sync flush, which the sender leaves out of each message (RFC 7692 7.2.1).
cdef const char *TAIL = b"\x00\x00\xff\xff"

cdef char *scratch = NULL
cdef Py_ssize_t scratch_capacity = 0

TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
SPACE = re.compile(rb"[ \t]*")
QUOTED = re.compile(rb'"((?:[\t !#-\[\]-~]|\\[\t -~])*)"')
ESCAPED = re.compile(rb"\\(.)")
WINDOW_BITS = {str(bits).encode(): bits for bits in range(8, 16)}


def parse_offers(bytes value) -> list:
    """The extensions a Sec-WebSocket-Extensions value offers, in order, each (name, [(parameter, value or
    None)]) (RFC 6455 9.1; a quoted value must be a token once unquoted; empty list elements are skipped);
    ValueError if it does not parse."""
    offers = []
    at = skip_separators(value, 0)
    while at < len(value):
        name, at = token(value, at)
        parameters = []
        at = SPACE.match(value, at).end()
        while value[at:at + 1] == b";":
            at = SPACE.match(value, at + 1).end()
            parameter, at = token(value, at)
            at = SPACE.match(value, at).end()
            argument = None
            if value[at:at + 1] == b"=":
                at = SPACE.match(value, at + 1).end()
                quoted = QUOTED.match(value, at)
                if quoted is not None:
                    argument = ESCAPED.sub(rb"\1", quoted.group(1))
                    if TOKEN.fullmatch(argument) is None:
                        raise ValueError(f"{parameter.decode()}'s quoted value is not a token")
                    at = quoted.end()
                else:
                    argument, at = token(value, at)
                at = SPACE.match(value, at).end()
            parameters.append((parameter, argument))
        offers.append((name, parameters))
        if at < len(value) and value[at:at + 1] != b",":
            raise ValueError(f"a comma expected at {at}")
        at = skip_separators(value, at)
    return offers


def token(bytes value, Py_ssize_t at) -> tuple:
    found = TOKEN.match(value, at)
    if found is None:
        raise ValueError(f"a token expected at {at}")
    return found.group(), found.end()


def skip_separators(bytes value, Py_ssize_t at) -> int:
    while True:
        at = SPACE.match(value, at).end()
        if value[at:at + 1] != b",":
            return at
        at += 1


def negotiate(list headers):
    """The permessage-deflate the client's first acceptable offer gets (None when it makes none): an
    offer with an unknown, repeated or invalid parameter is declined and the next one is tried, as the
    websockets library's server does; ValueError when a Sec-WebSocket-Extensions header does not parse."""
    offers = []
    for name, value in headers:
        if name.lower() == b"sec-websocket-extensions":
            offers.extend(parse_offers(value))
    for name, parameters in offers:
        if name == b"permessage-deflate":
            agreed = agree(parameters)
            if agreed is not None:
                return agreed
    return None


def agree(list parameters):
    """What we answer to one permessage-deflate offer (RFC 7692 7.1), or None to decline it."""
    given = {}
    for name, value in parameters:
        if name in given:
            return None
        given[name] = value
        if name in (b"server_no_context_takeover", b"client_no_context_takeover"):
            if value is not None:
                return None
        elif name == b"server_max_window_bits":
            if value not in WINDOW_BITS:
                return None
        elif name == b"client_max_window_bits":
            if value is not None and value not in WINDOW_BITS:
                return None
        else:
            return None
    server_bits = min(WINDOW_BITS.get(given.get(b"server_max_window_bits"), SERVER_WINDOW_BITS),
                      SERVER_WINDOW_BITS)
    if server_bits == 8:
        return None  # zlib cannot make raw deflate with a 256-byte window
    answer = b"Sec-WebSocket-Extensions: permessage-deflate"
    server_reset = b"server_no_context_takeover" in given
    client_reset = b"client_no_context_takeover" in given
    if server_reset:
        answer += b"; server_no_context_takeover"
    if client_reset:
        answer += b"; client_no_context_takeover"
    answer += b"; server_max_window_bits=%d" % server_bits
    client_bits = WHOLE_WINDOW_BITS
    if b"client_max_window_bits" in given:  # the client can limit its window: it gets ours or less
        client_bits = min(WINDOW_BITS.get(given[b"client_max_window_bits"], CLIENT_WINDOW_BITS),
                          CLIENT_WINDOW_BITS)
        answer += b"; client_max_window_bits=%d" % client_bits
    return PerMessageDeflate(server_reset, client_reset, server_bits, client_bits, answer + b"\r\n")


cdef class PerMessageDeflate:
    """permessage-deflate as agreed for one WebSocket: the server's compressor and the client's
    decompressor."""

    def __init__(self, bint server_no_context_takeover, bint client_no_context_takeover,
                 int server_window_bits, int client_window_bits, bytes answer):
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_window_bits = server_window_bits
        self.client_window_bits = client_window_bits
        self.answer = answer

    def __dealloc__(self):
        if self.compressing:
            deflateEnd(&self.compressor)
        if self.decompressing:
            inflateEnd(&self.decompressor)

    cdef bytes compress(self, const char *data, Py_ssize_t length):
        """A message's payload as it goes in its frame: deflated with a sync flush, without the flush's
        final 00 00 FF FF (RFC 7692 7.2.1)."""
        global scratch, scratch_capacity
        cdef z_stream *stream = &self.compressor
        cdef Py_ssize_t taken = 0, produced = 0, piece, bound
        cdef int status, flush
        if not self.compressing:
            stream.zalloc = stream.zfree = stream.opaque = NULL
            if deflateInit2(stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -self.server_window_bits, MEM_LEVEL,
                            Z_DEFAULT_STRATEGY) != Z_OK:
                raise MemoryError()
            self.compressing = True
        elif self.server_no_context_takeover:
            deflateReset(stream)
        bound = deflateBound(stream, length) + 16
        grow(&scratch, &scratch_capacity, bound, bound)  # the bound, no more: it holds the whole output
        while True:
            piece = min(length - taken, PIECE)
            stream.next_in = <unsigned char *>data + taken
            stream.avail_in = piece
            taken += piece
            flush = Z_SYNC_FLUSH if taken == length else Z_NO_FLUSH
            while True:  # until zlib leaves output room: all of the piece is in, and flushed if asked
                if produced == scratch_capacity:
                    grow(&scratch, &scratch_capacity, produced + 1)
                stream.next_out = <unsigned char *>scratch + produced
                stream.avail_out = min(scratch_capacity - produced, PIECE)
                status = deflate(stream, flush)
                produced = <char *>stream.next_out - scratch
                if status != Z_OK and status != Z_BUF_ERROR:
                    raise MemoryError()
                if stream.avail_out:
                    break
            if taken == length:
                break
        payload = PyBytes_FromStringAndSize(scratch, produced - 4)
        if scratch_capacity > SCRATCH_KEPT:
            free(scratch)
            scratch = NULL
            scratch_capacity = 0
        return payload

    cdef int decompress(self, const char *data, Py_ssize_t length, char **buffer, Py_ssize_t *capacity,
                        Py_ssize_t *used, Py_ssize_t limit) except -1:
        """Inflate the next piece of a message's deflate data onto the end of buffer (its first used bytes
        kept; grown as needed, but never to more than limit + 1 bytes): 0, or the close code the message
        earns: 1009 once it passes limit, 1002 when the data is not deflate."""
        cdef z_stream *stream = &self.decompressor
        cdef int status
        if self.stream_ended:
            return 0
        if not self.decompressing:
            stream.zalloc = stream.zfree = stream.opaque = NULL
            stream.next_in = NULL
            stream.avail_in = 0
            if inflateInit2(stream, -self.client_window_bits) != Z_OK:
                raise MemoryError()
            self.decompressing = True
        stream.next_in = <unsigned char *>data
        stream.avail_in = length
        while True:
            if used[0] == capacity[0]:
                grow(buffer, capacity, used[0] + 1, limit + 1)
            stream.next_out = <unsigned char *>buffer[0] + used[0]
            stream.avail_out = min(capacity[0] - used[0], PIECE)
            status = inflate(stream, Z_SYNC_FLUSH)
            used[0] = <char *>stream.next_out - buffer[0]
            if used[0] > limit:
                return 1009
            if status == Z_STREAM_END:
                self.stream_ended = True
                return 0
            if status == Z_MEM_ERROR:
                raise MemoryError()
            if status != Z_OK and status != Z_BUF_ERROR:
                return 1002
            if stream.avail_out:  # all of the input is in and all of its output out
                return 0

    cdef int end_message(self, char **buffer, Py_ssize_t *capacity, Py_ssize_t *used,
                         Py_ssize_t limit) except -1:
        """The message's last frame came: inflate the 00 00 FF FF its sender left out. 0, or the close
        code: decompress()'s, or 1002 when the data does not end between two deflate blocks (cut short,
        or an empty payload, which is no deflate data)."""
        cdef int code = 0
        if not self.stream_ended:
            code = self.decompress(TAIL, 4, buffer, capacity, used, limit)
            if code == 0 and not self.stream_ended and not self.decompressor.data_type & 128:
                code = 1002
        if self.decompressing and (self.stream_ended or self.client_no_context_takeover):
            inflateReset(&self.decompressor)
        self.stream_ended = False
        return code
