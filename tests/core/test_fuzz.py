"""Mutated requests (fixed seed): each gets a well-formed answer or a close, and the worker never dies."""

from __future__ import annotations

import random
import re
import socket

from tests.conftest import http_exchange

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"HEAD /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d [^\r\n]*\r\n")


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(data))
        action = rng.randrange(4)
        if action == 0:
            data[where] = rng.randrange(256)
        elif action == 1:
            del data[where]
        elif action == 2:
            data[where:where] = bytes([rng.choice(b"\r\n :;\x00\t0123456789aZ")])
        else:
            data[where:where] = data[rng.randrange(len(data)):][: rng.randint(1, 20)]
    return bytes(data)


def test_mutated_requests(serve):
    server = serve("--header-timeout", "1", "--body-timeout", "1")
    [worker] = server.workers()
    rng = random.Random(20261125)
    for index in range(400):
        request = mutate(rng, rng.choice(SEEDS))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            try:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before reading it all
            answer = http_exchange(sock, b"")
        if answer:
            assert STATUS_LINE.match(answer), (index, request, answer[:200])
    assert server.workers() == [worker]
