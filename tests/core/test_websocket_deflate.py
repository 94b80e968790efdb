"""permessage-deflate (RFC 7692) in core/websocket.pyx and core/deflate.pyx, through the built-in `/ws` echo:
the negotiation of every offer parameter, compressed cases in the spirit of the Autobahn testsuite's
sections 12 and 13 (RFC 7692's own examples, sizes, fragments, each parameter combination) fed whole,
split at every byte and byte by byte, broken compression that must close the WebSocket (the worker
living on), a decompression bomb, the websockets client library with compression on and off, and
--no-ws-per-message-deflate."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import zlib
from functools import partial

import pytest

from tests.core.ws_client import (
    BINARY,
    BYE,
    CLOSE,
    CONTINUATION,
    DEFLATED_BINARY,
    DEFLATED_TEXT,
    OK,
    PING,
    PONG,
    TEXT,
    Deflater,
    Inflater,
    check_everywhere,
    frame,
    read_head,
    read_until_closed,
    run_case,
    upgrade_request,
)

COMPRESSED = 4  # frame()'s rsv for RSV1
DEFAULT_OFFER = b"permessage-deflate"
DEFAULT_ANSWER = b"permessage-deflate; server_max_window_bits=12"
# RFC 7692 7.2.3.1: "Hello" in one compressed block (and 7.2.3.2: the same again, sharing the window).
HELLO = bytes.fromhex("f248cdc9c90700")
HELLO_AGAIN = bytes.fromhex("f200110000")


def deflated(payload: bytes) -> bytes:
    return Deflater()(payload)


# name: (what the client sends after offering permessage-deflate, what the server must answer)
CASES = {
    # RFC 7692 7.2.3's examples
    "7.2.3.1: one compressed block": (frame(TEXT, HELLO, rsv=COMPRESSED) + BYE, [(TEXT, b"Hello"), OK]),
    "7.2.3.1: one compressed block in two fragments": (
        frame(TEXT, HELLO[:3], fin=False, rsv=COMPRESSED) + frame(CONTINUATION, HELLO[3:]) + BYE,
        [(TEXT, b"Hello"), OK]),
    "7.2.3.2: the second message uses the first's window": (
        frame(TEXT, HELLO, rsv=COMPRESSED) + frame(TEXT, HELLO_AGAIN, rsv=COMPRESSED) + BYE,
        [(TEXT, b"Hello"), (TEXT, b"Hello"), OK]),
    "7.2.3.3: a block with no compression": (
        frame(TEXT, bytes.fromhex("000500faff48656c6c6f00"), rsv=COMPRESSED) + BYE, [(TEXT, b"Hello"), OK]),
    "7.2.3.4: a block with BFINAL set, then a new stream": (
        frame(TEXT, bytes.fromhex("f348cdc9c9070000"), rsv=COMPRESSED) + frame(BINARY, HELLO, rsv=COMPRESSED)
        + BYE, [(TEXT, b"Hello"), (BINARY, b"Hello"), OK]),
    "7.2.3.5: two blocks in one message": (
        frame(TEXT, bytes.fromhex("f24805000000ffffcac9c90700"), rsv=COMPRESSED) + BYE,
        [(TEXT, b"Hello"), OK]),
    "an empty compressed message": (frame(TEXT, b"\x00", rsv=COMPRESSED) + BYE, [(TEXT, b""), OK]),
    # compressed and uncompressed messages mixed
    "uncompressed between compressed": (
        frame(TEXT, HELLO, rsv=COMPRESSED) + frame(BINARY, b"plain")
        + frame(TEXT, HELLO_AGAIN, rsv=COMPRESSED) + BYE,
        [(TEXT, b"Hello"), (BINARY, b"plain"), (TEXT, b"Hello"), OK]),
    "large compressed text is echoed compressed": (
        frame(TEXT, deflated(b"fastcluster " * 200), rsv=COMPRESSED) + BYE,
        [(DEFLATED_TEXT, b"fastcluster " * 200), OK]),
    "large uncompressed binary is echoed compressed": (
        frame(BINARY, bytes(range(16)) * 80) + BYE, [(DEFLATED_BINARY, bytes(range(16)) * 80), OK]),
    # fragments of compressed messages
    "a ping between compressed fragments": (
        frame(TEXT, HELLO[:2], fin=False, rsv=COMPRESSED) + frame(PING, b"p") + frame(CONTINUATION, HELLO[2:])
        + BYE, [(PONG, b"p"), (TEXT, b"Hello"), OK]),
    "an empty first fragment": (
        frame(TEXT, b"", fin=False, rsv=COMPRESSED) + frame(CONTINUATION, HELLO) + BYE,
        [(TEXT, b"Hello"), OK]),
    "an empty last fragment": (
        frame(TEXT, HELLO, fin=False, rsv=COMPRESSED) + frame(CONTINUATION, b"") + BYE,
        [(TEXT, b"Hello"), OK]),
    "a character split across compressed fragments": (
        frame(TEXT, deflated("€".encode())[:1], fin=False, rsv=COMPRESSED)
        + frame(CONTINUATION, deflated("€".encode())[1:]) + BYE, [(TEXT, "€".encode()), OK]),
    # broken: 1002 for the framing and the deflate data, 1007 for the text inside
    "RSV1 on a continuation": (
        frame(TEXT, HELLO[:3], fin=False, rsv=COMPRESSED) + frame(CONTINUATION, HELLO[3:], rsv=COMPRESSED),
        [(CLOSE, 1002)]),
    "RSV1 on the continuation of an uncompressed message": (
        frame(TEXT, b"ab", fin=False) + frame(CONTINUATION, HELLO, rsv=COMPRESSED), [(CLOSE, 1002)]),
    "RSV1 on a ping": (frame(PING, b"p", rsv=COMPRESSED), [(CLOSE, 1002)]),
    "RSV1 on a pong": (frame(PONG, b"p", rsv=COMPRESSED), [(CLOSE, 1002)]),
    "RSV1 on a close": (frame(CLOSE, struct.pack("!H", 1000), rsv=COMPRESSED), [(CLOSE, 1002)]),
    "RSV1 on a ping between compressed fragments": (
        frame(TEXT, HELLO[:3], fin=False, rsv=COMPRESSED) + frame(PING, b"", rsv=COMPRESSED),
        [(CLOSE, 1002)]),
    "RSV2 on a compressed message": (frame(TEXT, HELLO, rsv=COMPRESSED | 2), [(CLOSE, 1002)]),
    "RSV3 alone": (frame(TEXT, HELLO, rsv=1), [(CLOSE, 1002)]),
    "not deflate data": (frame(TEXT, b"\xff\xff\xff\xff", rsv=COMPRESSED), [(CLOSE, 1002)]),
    "deflate data cut inside a block": (frame(TEXT, HELLO[:4], rsv=COMPRESSED), [(CLOSE, 1002)]),
    "an empty compressed payload is no deflate data": (frame(TEXT, b"", rsv=COMPRESSED), [(CLOSE, 1002)]),
    "the sync flush's tail left in": (frame(TEXT, HELLO + b"\x00\x00\xff\xff", rsv=COMPRESSED),
                                      [(CLOSE, 1002)]),
    "inflated text that is not UTF-8": (frame(TEXT, deflated(b"a\xffb"), rsv=COMPRESSED), [(CLOSE, 1007)]),
    "inflated text broken in its first fragment": (
        frame(TEXT, deflated(b"\xff" * 3), fin=False, rsv=COMPRESSED), [(CLOSE, 1007)]),
    "a good message, then bad deflate data": (
        frame(TEXT, HELLO, rsv=COMPRESSED) + frame(BINARY, b"\xff\xff\xff\xff", rsv=COMPRESSED),
        [(TEXT, b"Hello"), (CLOSE, 1002)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compressed_case_whole_split_and_byte_by_byte(ws_server, name):
    check_everywhere(ws_server, *CASES[name], offer=DEFAULT_OFFER, inflate=partial(Inflater, 12))


# name: (the offer, the client's window bits and no-context-takeover, the server's as agreed)
OFFERS = {
    "default": (DEFAULT_OFFER, 15, False, 12, False),
    "client_max_window_bits": (b"permessage-deflate; client_max_window_bits", 12, False, 12, False),
    "client_no_context_takeover": (b"permessage-deflate; client_no_context_takeover", 15, True, 12, False),
    "server_no_context_takeover": (b"permessage-deflate; server_no_context_takeover", 15, False, 12, True),
    "no context takeover both ways": (
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover", 15, True, 12, True),
    "smallest windows": (b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
                         9, False, 9, False),
    "windows asked larger than given": (
        b"permessage-deflate; server_max_window_bits=15; client_max_window_bits=15", 12, False, 12, False),
}
REPEATED = b"Hello, compressed WebSocket! " * 40  # 1160 bytes: its echo is compressed too
SMALL = b"Hello"  # its echo is not


def conversation(client_bits: int, client_resets: bool) -> tuple[bytes, list]:
    """Messages whose compression depends on the context (the same text three times, a fragmented one) and
    the echoes they must get."""
    compress = Deflater(client_bits, client_resets)
    binary = bytes(range(16)) * 80
    messages = ((TEXT, REPEATED), (TEXT, SMALL), (TEXT, REPEATED), (BINARY, binary))
    data = b"".join(frame(opcode, compress(payload), rsv=COMPRESSED) for opcode, payload in messages)
    data += frame(TEXT, compress(REPEATED), fin=False, rsv=COMPRESSED) + frame(CONTINUATION, b"", fin=False)
    data += frame(CONTINUATION, b"")
    fragmented = compress(REPEATED)
    data += frame(TEXT, fragmented[:2], fin=False, rsv=COMPRESSED) + frame(CONTINUATION, fragmented[2:]) + BYE
    expected = [(DEFLATED_TEXT, REPEATED), (TEXT, SMALL), (DEFLATED_TEXT, REPEATED),
                (DEFLATED_BINARY, binary), (DEFLATED_TEXT, REPEATED), (DEFLATED_TEXT, REPEATED), OK]
    return data, expected


@pytest.mark.parametrize("name", list(OFFERS))
def test_each_parameter_combination_whole_split_and_byte_by_byte(ws_server, name):
    """The server's messages are inflated with the window it agreed to and, for server_no_context_takeover,
    a fresh stream each: a server that used more would fail here."""
    offer, client_bits, client_resets, server_bits, server_resets = OFFERS[name]
    data, expected = conversation(client_bits, client_resets)
    check_everywhere(ws_server, data, expected, offer=offer,
                     inflate=partial(Inflater, server_bits, server_resets))


def words(size: int, seed: int) -> bytes:
    """Text that compresses as text does (not as a run of one byte)."""
    chosen = random.Random(seed)
    vocabulary = [bytes(chosen.choices(b"abcdefghijklmnopqrstuvwxyz", k=chosen.randint(2, 9)))
                  for _ in range(300)]
    text = b" ".join(chosen.choice(vocabulary) for _ in range(size // 4 + 1))
    return text[:size]


@pytest.mark.parametrize("name", ["default", "no context takeover both ways", "smallest windows"])
def test_messages_of_every_size_whole_and_fragmented(ws_server, name):
    """Autobahn 12 and 13: messages from 16 bytes to 1 MiB, each in one frame and then in fragments, one
    after the other on one WebSocket."""
    offer, client_bits, client_resets, server_bits, server_resets = OFFERS[name]
    compress = Deflater(client_bits, client_resets)
    data, expected = b"", []
    for number, size in enumerate((16, 64, 256, 1023, 1024, 4096, 16384, 65536, 262144, 1 << 20)):
        payload = words(size, number)
        data += frame(TEXT, compress(payload), rsv=COMPRESSED)
        pieces = compress(payload)
        step = len(pieces) // 4 + 1
        data += frame(BINARY, pieces[:step], fin=False, rsv=COMPRESSED)
        data += b"".join(frame(CONTINUATION, pieces[at:at + step], fin=at + step >= len(pieces))
                         for at in range(step, len(pieces), step))
        flag = DEFLATED_TEXT - TEXT if size >= 1024 else 0  # the echo is compressed from 1 KiB
        expected += [(TEXT | flag, payload), (BINARY | flag, payload)]
    inflate = partial(Inflater, server_bits, server_resets)
    assert run_case(ws_server.port, data + BYE, offer=offer, inflate=inflate) == expected + [OK]


def test_the_inflated_size_is_what_ws_max_size_limits(serve):
    server = serve("--ws-max-size", "1000")
    inflate = partial(Inflater, 12)
    exact = frame(BINARY, deflated(b"x" * 1000), rsv=COMPRESSED)  # 9 bytes on the wire
    assert run_case(server.port, exact + BYE, offer=DEFAULT_OFFER, inflate=inflate) == \
        [(BINARY, b"x" * 1000), OK]  # (small compressed, larger inflated: not compressed back under 1 KiB)
    one_more = frame(BINARY, deflated(b"x" * 1001), rsv=COMPRESSED)
    assert run_case(server.port, one_more, offer=DEFAULT_OFFER, inflate=inflate) == [(CLOSE, 1009)]
    pieces = deflated(b"x" * 1001)
    fragmented = frame(TEXT, pieces[:4], fin=False, rsv=COMPRESSED) + frame(CONTINUATION, pieces[4:])
    assert run_case(server.port, fragmented, offer=DEFAULT_OFFER, inflate=inflate) == [(CLOSE, 1009)]
    # incompressible data is a little larger deflated: the frame's own length counts too
    incompressible = bytes(random.Random(1).randbytes(1000))
    assert run_case(server.port, frame(BINARY, deflated(incompressible), rsv=COMPRESSED), offer=DEFAULT_OFFER,
                    inflate=inflate) == [(CLOSE, 1009)]


def peak_memory(pid: int) -> int:
    """The process's peak resident memory in KiB (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_decompression_bomb_never_grows_past_the_limit(serve):
    """256 KiB that inflate to 256 MiB, in one frame and in fragments: 1009, and the worker's peak memory
    grows by far less than the bomb (it inflates at most --ws-max-size + 1 bytes)."""
    server = serve("--ws-max-size", "1m")
    worker = server.workers()[0]
    stream = zlib.compressobj(wbits=-15)
    mebibyte = stream.compress(bytes(1 << 20)) + stream.flush(zlib.Z_SYNC_FLUSH)  # ~1 KiB; any copy follows
    bomb = mebibyte * 256
    before = peak_memory(worker)
    one_frame = frame(BINARY, bomb[:-4], rsv=COMPRESSED)
    assert run_case(server.port, one_frame, offer=DEFAULT_OFFER) == [(CLOSE, 1009)]
    fragments = frame(BINARY, mebibyte, fin=False, rsv=COMPRESSED) + b"".join(
        frame(CONTINUATION, mebibyte, fin=False) for _ in range(255))
    assert run_case(server.port, fragments, offer=DEFAULT_OFFER) == [(CLOSE, 1009)]
    assert peak_memory(worker) - before < 32 << 10, "the bomb was inflated past the limit"
    assert server.workers() == [worker]


def handshake_answer(port: int, request: bytes) -> bytes:
    """The server's answer to a handshake, up to the end of its head."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        head, _ = read_head(sock)
    return head


def extensions_answered(head: bytes) -> bytes | None:
    assert head.startswith(b"HTTP/1.1 101 "), head
    lines = [line for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-extensions:")]
    assert len(lines) <= 1, head
    return lines[0].partition(b":")[2].strip() if lines else None


# the Sec-WebSocket-Extensions values a client sends (one header each) -> what the 101 answers (None: no
# extension): as the websockets library's server negotiates, an offer it cannot take is skipped
NEGOTIATIONS = [
    ([DEFAULT_OFFER], DEFAULT_ANSWER),
    ([b"permessage-deflate; client_max_window_bits"], DEFAULT_ANSWER + b"; client_max_window_bits=12"),
    ([b"permessage-deflate; client_max_window_bits=10"], DEFAULT_ANSWER + b"; client_max_window_bits=10"),
    ([b"permessage-deflate; client_max_window_bits=15"], DEFAULT_ANSWER + b"; client_max_window_bits=12"),
    ([b'permessage-deflate; client_max_window_bits="9"'], DEFAULT_ANSWER + b"; client_max_window_bits=9"),
    ([b"permessage-deflate; client_max_window_bits=8"], DEFAULT_ANSWER + b"; client_max_window_bits=8"),
    ([b"permessage-deflate; server_max_window_bits=10"], b"permessage-deflate; server_max_window_bits=10"),
    ([b"permessage-deflate; server_max_window_bits=15"], DEFAULT_ANSWER),
    ([b"permessage-deflate;server_no_context_takeover"],
     b"permessage-deflate; server_no_context_takeover; server_max_window_bits=12"),
    ([b"permessage-deflate; client_no_context_takeover"],
     b"permessage-deflate; client_no_context_takeover; server_max_window_bits=12"),
    ([b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9;"
      b" client_max_window_bits"],
     b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9;"
     b" client_max_window_bits=12"),
    # declined offers: the next one is taken, or none
    ([b"permessage-deflate; server_max_window_bits=8"], None),  # zlib cannot use a 256-byte window
    ([b"permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits"],
     DEFAULT_ANSWER + b"; client_max_window_bits=12"),
    ([b"permessage-deflate; server_max_window_bits"], None),
    ([b"permessage-deflate; server_max_window_bits=16"], None),
    ([b"permessage-deflate; client_max_window_bits=7"], None),
    ([b"permessage-deflate; client_max_window_bits=010"], None),
    ([b"permessage-deflate; server_no_context_takeover=true"], None),
    ([b"permessage-deflate; client_no_context_takeover; client_no_context_takeover"], None),
    ([b"permessage-deflate; mystery"], None),
    ([b"Permessage-Deflate"], None),
    ([b"x-webkit-deflate-frame"], None),
    ([b"x-webkit-deflate-frame, permessage-deflate"], DEFAULT_ANSWER),
    ([b"x-webkit-deflate-frame", b"permessage-deflate; server_no_context_takeover"],
     b"permessage-deflate; server_no_context_takeover; server_max_window_bits=12"),
    ([b", permessage-deflate ,"], DEFAULT_ANSWER),
    ([b"permessage-deflate, permessage-deflate; server_no_context_takeover"], DEFAULT_ANSWER),
]


@pytest.mark.parametrize("offers, answer", NEGOTIATIONS)
def test_negotiation(ws_server, offers, answer):
    extra = b"".join(b"Sec-WebSocket-Extensions: " + offer + b"\r\n" for offer in offers)
    assert extensions_answered(handshake_answer(ws_server.port, upgrade_request(extra=extra))) == answer


@pytest.mark.parametrize("offer", [b"permessage-deflate;", b"permessage-deflate; =1", b"permessage-deflate x",
                                   b'permessage-deflate; client_max_window_bits="1', b"per message",
                                   b'permessage-deflate; client_max_window_bits="1 0"', b";"])
def test_an_extensions_header_that_does_not_parse_is_a_400(ws_server, offer):
    with ws_server.connect() as sock:
        sock.sendall(upgrade_request(offer=offer))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"Sec-WebSocket-Extensions" in answer


def test_without_per_message_deflate_no_offer_is_taken(serve):
    server = serve("--no-ws-per-message-deflate")
    for offer in (DEFAULT_OFFER, b"permessage-deflate x"):  # not even parsed
        head = handshake_answer(server.port, upgrade_request(offer=offer))
        assert extensions_answered(head) is None
    with server.connect() as sock:
        sock.sendall(upgrade_request(offer=DEFAULT_OFFER) + frame(TEXT, HELLO, rsv=COMPRESSED))
        head, rest = read_head(sock)
        assert read_until_closed(sock, rest) == bytes([0x88, 2]) + struct.pack("!H", 1002)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_library(ws_server, compression):
    from websockets.asyncio.client import connect

    async def talk() -> None:
        url = f"ws://127.0.0.1:{ws_server.port}/ws"
        async with connect(url, max_size=None, compression=compression) as ws:
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
            answer = f"{DEFAULT_ANSWER.decode()}; client_max_window_bits=12"
            assert agreed == (answer if compression else None)
            assert len(ws.protocol.extensions) == (1 if compression else 0)
            for message in ("hello", "é" * 70_000, b"\x00" * 3_000_000, words(200_000, 7), b"x" * 1024):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag" * 500, "ment" * 500, "ed"])
            assert await ws.recv() == "frag" * 500 + "ment" * 500 + "ed"
            await (await ws.ping(b"data"))

    asyncio.run(talk())
