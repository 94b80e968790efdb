"""RFC 6455 conformance of core/websocket.pyx, through the built-in responder's `/ws` echo: case by case in
the spirit of the Autobahn testsuite's sections, each case fed whole (with the handshake), split at every
byte and byte by byte over a raw socket; the worker must survive every malformed case."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.core.ws_client import (
    ACCEPT,
    BINARY,
    BYE,
    CLOSE,
    CONTINUATION,
    OK,
    PING,
    PONG,
    TEXT,
    check_everywhere,
    close_frame,
    frame,
    normalized,
    parse_frames,
    read_head,
    read_until_closed,
    run_case,
    upgrade_request,
)

# name: (what the client sends after the handshake, what the server must answer, then it closes)
CASES = {
    # framing
    "text, empty": (frame(TEXT) + BYE, [(TEXT, b""), OK]),
    "text, 125 bytes": (frame(TEXT, b"a" * 125) + BYE, [(TEXT, b"a" * 125), OK]),
    "binary, 126 bytes (16-bit length)": (frame(BINARY, bytes(range(126))) + BYE,
                                          [(BINARY, bytes(range(126))), OK]),
    "text, 16-bit length form for 5 bytes": (frame(TEXT, b"hello", wide=2) + BYE, [(TEXT, b"hello"), OK]),
    "text, 64-bit length form for 5 bytes": (frame(TEXT, b"hello", wide=8) + BYE, [(TEXT, b"hello"), OK]),
    "two messages in a row": (frame(TEXT, b"a") + frame(BINARY, b"b") + BYE,
                              [(TEXT, b"a"), (BINARY, b"b"), OK]),
    "unmasked frame": (frame(TEXT, b"hi", mask=False), [(CLOSE, 1002)]),
    "64-bit length with its top bit set": (frame(BINARY, b"", length=1 << 63), [(CLOSE, 1002)]),
    # pings and pongs
    "ping, empty": (frame(PING) + BYE, [(PONG, b""), OK]),
    "ping, 125 bytes": (frame(PING, b"p" * 125) + BYE, [(PONG, b"p" * 125), OK]),
    "ping, 126 bytes": (frame(PING, b"p" * 126), [(CLOSE, 1002)]),
    "ping, fragmented": (frame(PING, b"a", fin=False) + frame(CONTINUATION, b"b"), [(CLOSE, 1002)]),
    "unsolicited pong": (frame(PONG, b"x") + frame(TEXT, b"after") + BYE, [(TEXT, b"after"), OK]),
    "ten pings": (frame(PING, b"1") * 10 + BYE, [(PONG, b"1")] * 10 + [OK]),
    # reserved bits
    **{f"reserved bits {rsv} on text": (frame(TEXT, b"x", rsv=rsv), [(CLOSE, 1002)]) for rsv in range(1, 8)},
    "reserved bit on a ping": (frame(PING, b"x", rsv=4), [(CLOSE, 1002)]),
    "reserved bit after a good message": (frame(TEXT, b"ok") + frame(TEXT, b"x", rsv=2),
                                          [(TEXT, b"ok"), (CLOSE, 1002)]),
    # opcodes
    **{f"opcode {op}": (frame(op, b"x"), [(CLOSE, 1002)]) for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)},
    # fragmentation
    "text in three fragments": (frame(TEXT, b"ab", fin=False) + frame(CONTINUATION, b"cd", fin=False)
                                + frame(CONTINUATION, b"ef") + BYE, [(TEXT, b"abcdef"), OK]),
    "binary fragments, empty ones too": (frame(BINARY, b"", fin=False) + frame(CONTINUATION, b"x", fin=False)
                                         + frame(CONTINUATION, b"") + BYE, [(BINARY, b"x"), OK]),
    "ping between fragments": (frame(TEXT, b"ab", fin=False) + frame(PING, b"p") + frame(CONTINUATION, b"cd")
                               + BYE, [(PONG, b"p"), (TEXT, b"abcd"), OK]),
    "pong between fragments": (frame(TEXT, b"ab", fin=False) + frame(PONG, b"p") + frame(CONTINUATION, b"cd")
                               + BYE, [(TEXT, b"abcd"), OK]),
    "continuation of nothing": (frame(CONTINUATION, b"x"), [(CLOSE, 1002)]),
    "final continuation of nothing": (frame(CONTINUATION, b"x", fin=False), [(CLOSE, 1002)]),
    "new message inside a fragmented one": (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
                                            [(CLOSE, 1002)]),
    "fragmented close": (frame(CLOSE, struct.pack("!H", 1000), fin=False), [(CLOSE, 1002)]),
    # UTF-8
    "text, valid multi-byte": (frame(TEXT, "κόσμε €𝄞".encode()) + BYE, [(TEXT, "κόσμε €𝄞".encode()), OK]),
    "text, a character split across fragments": (
        frame(TEXT, "€".encode()[:1], fin=False) + frame(CONTINUATION, "€".encode()[1:2], fin=False)
        + frame(CONTINUATION, "€".encode()[2:]) + BYE, [(TEXT, "€".encode()), OK]),
    "binary is not checked": (frame(BINARY, b"\xff\xfe") + BYE, [(BINARY, b"\xff\xfe"), OK]),
    "text, 0xFF": (frame(TEXT, b"a\xffb"), [(CLOSE, 1007)]),
    "text, overlong slash": (frame(TEXT, b"\xc0\xaf"), [(CLOSE, 1007)]),
    "text, overlong 3-byte": (frame(TEXT, b"\xe0\x80\xaf"), [(CLOSE, 1007)]),
    "text, surrogate": (frame(TEXT, b"\xed\xa0\x80"), [(CLOSE, 1007)]),
    "text, past U+10FFFF": (frame(TEXT, b"\xf4\x90\x80\x80"), [(CLOSE, 1007)]),
    "text, cut inside a character": (frame(TEXT, b"a\xe2\x82"), [(CLOSE, 1007)]),
    "text, fragments end inside a character": (frame(TEXT, b"\xe2", fin=False) + frame(CONTINUATION, b"\x82"),
                                               [(CLOSE, 1007)]),
    "text, invalid in the first fragment fails before the end": (frame(TEXT, b"\xff", fin=False),
                                                                  [(CLOSE, 1007)]),
    # close handling
    "close, no code": (close_frame(), [(CLOSE, None)]),
    "close 1000 with a reason": (close_frame(1000, b"bye"), [OK]),
    **{f"close {code}": (close_frame(code), [(CLOSE, code)])
       for code in (1001, 1003, 1007, 1011, 3000, 4999)},
    "close, one byte": (frame(CLOSE, b"\x03"), [(CLOSE, 1002)]),
    **{f"close, invalid code {code}": (close_frame(code), [(CLOSE, 1002)])
       for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)},
    "close, reason not UTF-8": (close_frame(1000, b"\xff"), [(CLOSE, 1007)]),
    "close, 126-byte payload": (frame(CLOSE, struct.pack("!H", 1000) + b"r" * 124), [(CLOSE, 1002)]),
    "data after close is dropped": (BYE + frame(TEXT, b"late"), [OK]),
    "ping after close is not answered": (BYE + frame(PING, b"late"), [OK]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_case_whole_split_and_byte_by_byte(ws_server, name):
    check_everywhere(ws_server, *CASES[name])


@pytest.mark.parametrize("size", [65535, 65536, 1 << 20])
def test_large_messages_are_echoed(ws_server, size):
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert run_case(ws_server.port, frame(BINARY, payload) + BYE) == [(BINARY, payload), OK]
    fragments = frame(BINARY, payload[:1000], fin=False) + frame(CONTINUATION, payload[1000:]) + BYE
    assert run_case(ws_server.port, fragments) == [(BINARY, payload), OK]


def test_handshake_answer_follows_rfc_6455(ws_server):
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=5) as sock:
        sock.sendall(upgrade_request())
        head, _ = read_head(sock)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    fields = {name.lower(): value for name, _, value in (line.partition(b": ") for line in lines[1:])}
    assert fields[b"sec-websocket-accept"] == ACCEPT
    assert fields[b"upgrade"].lower() == b"websocket" and fields[b"connection"].lower() == b"upgrade"


@pytest.mark.parametrize("request_bytes, status, header", [
    (upgrade_request(version=b"8"), 426, b"Sec-WebSocket-Version: 13"),
    (upgrade_request(key=b"short"), 400, None),
    (upgrade_request(key=b"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 400, None),  # base64, but not 16 bytes
    (upgrade_request().replace(b"GET", b"POST"), 400, None),
    (upgrade_request("/ws?delay=x"), 400, None),
    (upgrade_request("/ws?close=1005"), 400, None),
    (b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n", 426, b"Upgrade: websocket"),
])
def test_bad_handshakes_are_refused(ws_server, request_bytes, status, header):
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    assert b"\r\nConnection: close\r\n" in answer
    if header:
        assert b"\r\n" + header + b"\r\n" in answer


def test_max_size_closes_with_1009(serve):
    server = serve("--ws-max-size", "1000")
    assert run_case(server.port, frame(BINARY, b"x" * 1000) + BYE) == [(BINARY, b"x" * 1000), OK]
    assert run_case(server.port, frame(BINARY, b"x" * 1001)) == [(CLOSE, 1009)]
    # known from the head alone, before the payload has come
    assert run_case(server.port, frame(BINARY, b"", length=1 << 40)) == [(CLOSE, 1009)]
    fragments = frame(TEXT, b"x" * 600, fin=False) + frame(CONTINUATION, b"x" * 401)
    assert run_case(server.port, fragments) == [(CLOSE, 1009)]


def test_echo_controls(ws_server):
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=5) as sock:
        sock.sendall(upgrade_request("/ws?size=70&close=4001") + frame(TEXT, b"hi") + BYE)
        head, rest = read_head(sock)
        frames = normalized(parse_frames(read_until_closed(sock, rest)))
    pattern = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert frames == [(TEXT, (pattern * 2)[:70]), (CLOSE, 4001)]
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=5) as sock:
        sock.sendall(upgrade_request("/ws?delay=50") + frame(TEXT, b"1") + frame(BINARY, b"2") + BYE)
        head, rest = read_head(sock)
        assert normalized(parse_frames(read_until_closed(sock, rest))) == [(TEXT, b"1"), (BINARY, b"2"), OK]


def test_pings_an_idle_peer_and_closes_when_no_pong_comes(serve):
    server = serve("--ws-ping-interval", "1", "--ws-ping-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request())
        head, rest = read_head(sock)
        frames = normalized(parse_frames(read_until_closed(sock, rest)))
    assert frames == [(PING, b""), (CLOSE, 1011)]


def test_graceful_stop_closes_websockets_with_1001(serve):
    server = serve("--graceful-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request() + frame(TEXT, b"hi"))
        head, rest = read_head(sock)
        while len(rest) < 4:
            rest += sock.recv(100)
        server.signal(15)
        frames = normalized(parse_frames(read_until_closed(sock, rest)))
    assert frames == [(TEXT, b"hi"), (CLOSE, 1001)]
    assert server.proc.wait(15) == 0  # the worker drained and exited by itself


def test_access_log_logs_the_upgrade(serve):
    server = serve("--access-log", "-")
    assert run_case(server.port, frame(TEXT, b"x") + BYE) == [(TEXT, b"x"), OK]
    assert server.stop() == 0
    assert '"GET /ws HTTP/1.1" 101 ' in server.read_output()


def test_websockets_client_library(ws_server):
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{ws_server.port}/ws", max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00" * 3_000_000)
            assert await ws.recv() == b"\x00" * 3_000_000
            await ws.send(["frag", "ment", "ed"])
            assert await ws.recv() == "fragmented"
            await (await ws.ping(b"data"))
        async with connect(f"ws://127.0.0.1:{ws_server.port}/ws?close=4000") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4000

    asyncio.run(talk())


def test_a_client_that_does_not_read_is_not_answered_past_the_limit(ws_server):
    """Messages sent while the echoes are not read: the server stops reading, then catches up."""
    import threading

    message = frame(BINARY, b"m" * 100_000)
    count = 60
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=10) as sock:
        sock.sendall(upgrade_request())
        head, rest = read_head(sock)
        sender = threading.Thread(target=lambda: sock.sendall(message * count + BYE))
        sender.start()
        frames = parse_frames(read_until_closed(sock, rest, timeout=10))
        sender.join()
    assert [opcode for opcode, _ in frames] == [BINARY] * count + [CLOSE]
    assert all(payload == b"m" * 100_000 for _, payload in frames[:-1])


def test_immediate_stop_closes_websockets_with_1001_at_once(serve):
    server = serve("--graceful-timeout", "60")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request())
        head, rest = read_head(sock)
        server.signal(3)  # SIGQUIT: no drain
        frames = normalized(parse_frames(read_until_closed(sock, rest)))
    assert frames == [(CLOSE, 1001)]
    assert server.proc.wait(15) == 0


def test_metrics_count_open_websockets_and_messages(serve):
    import urllib.request

    from fastcluster.metrics import parse_metrics
    from tests.conftest import free_port, wait_until

    admin = free_port()
    server = serve("--admin-port", str(admin))

    def metrics() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as answer:
            return parse_metrics(answer.read().decode())

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(upgrade_request() + frame(TEXT, b"a") + frame(TEXT, b"b"))
        head, rest = read_head(sock)
        while len(rest) < 6:
            rest += sock.recv(100)
        assert wait_until(lambda: metrics().get('fastcluster_open_websockets{slot="0"}') == 1)
        assert metrics()['fastcluster_websocket_messages_total{slot="0"}'] == 4  # two in, two out
        sock.sendall(BYE)
        read_until_closed(sock)
    assert wait_until(lambda: metrics().get('fastcluster_open_websockets{slot="0"}') == 0)
