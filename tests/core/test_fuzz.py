"""Differential fuzzing: mutated request streams go to fastcluster and to our framing model
(tests/core/framing.py). Where both accept a request, they must agree on where it ends: the body /echo sends
back is the one the model reads, and the requests after it line up. The worker never dies.

The test runs a fixed, seeded number of cases; `python -m tests.core.test_fuzz PORT SECONDS [SEED]` runs
against a server started by hand for as long as asked, and prints the figures.
"""

from __future__ import annotations

import random
import re
import socket
import sys
import time
from collections import Counter

from tests.conftest import http_exchange
from tests.core.framing import Incomplete, Invalid, Request, parse_chunked, parse_stream

H = b"Host: t\r\n"
SEEDS = [
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhelloGET /echo HTTP/1.1\r\n" + H + b"\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6\r\n world"
    b"\r\n0\r\nT: v\r\n\r\nPOST /echo HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc",
    b"GET /echo HTTP/1.1\r\n" + H + b"\r\nPOST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n"
    b"PUT /echo HTTP/1.1\r\n" + H + b"Connection: close\r\nContent-Length: 2\r\n\r\nok",
    b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\nbody"
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5; a=b\r\nhello\r\n3;\t x\r\nabc"
    b"\r\n0\r\n\r\nPOST /echo HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nok",
]
INSERTED_FIELDS = [b"Content-Length: 3\r\n", b"Content-Length: 3, 3\r\n", b"Transfer-Encoding: chunked\r\n",
                   b"Transfer-Encoding: identity\r\n", b"Transfer-Encoding : chunked\r\n", b" X: y\r\n",
                   b"Content-Length:\t+3\r\n", b"Host: u\r\n", b"Connection: close\r\n"]
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5]\d\d) [^\r\n]*\r\n")


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(len(data))
        action = rng.randrange(7)
        if action == 0:
            data[where] = rng.randrange(256)
        elif action == 1:
            del data[where]
        elif action == 2:
            data[where:where] = bytes([rng.choice(b"\r\n :;=\"\x00\t0123456789aFZ")])
        elif action == 3:
            data[where:where] = data[rng.randrange(len(data)):][: rng.randint(1, 20)]
        elif action == 4:  # another length: a digit changed
            digits = [i for i, byte in enumerate(data) if 0x30 <= byte <= 0x39]
            if digits:
                data[rng.choice(digits)] = rng.choice(b"0123456789")
        elif action == 5:  # a framing field added after some line
            lines = [i + 2 for i in range(len(data) - 1) if data[i:i + 2] == b"\r\n"]
            if lines:
                at = rng.choice(lines)
                data[at:at] = rng.choice(INSERTED_FIELDS)
        else:  # a CRLF loses its CR
            crlfs = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\r\n"]
            if crlfs:
                del data[rng.choice(crlfs)]
    return bytes(data)


def split_answers(data: bytes, requests: list[Request]) -> list[tuple[int, bytes]] | None:
    """(status, body) of each final answer in data; None if data is not a sequence of well-formed answers."""
    answers: list[tuple[int, bytes]] = []
    position = 0
    while position < len(data):
        status_line = STATUS_LINE.match(data, position)
        head_end = data.find(b"\r\n\r\n", position)
        if not status_line or head_end < 0:
            return None
        status = int(status_line.group(1))
        head = data[position:head_end].lower()
        position = head_end + 4
        if status < 200:
            continue
        index = len(answers)
        length = re.search(rb"\r\ncontent-length: (\d+)", head)
        if (index < len(requests) and requests[index].method == b"HEAD") or status in (204, 304):
            body = b""
        elif b"\r\ntransfer-encoding: chunked" in head:
            try:
                body, position, _ = parse_chunked(data, position)
            except (Invalid, Incomplete):
                return None
        elif length:
            body = data[position:position + int(length.group(1))]
            position += len(body)
        else:
            body, position = data[position:], len(data)
        answers.append((status, body))
    return answers


def compare(requests: list[Request], ending: str, answers: list[tuple[int, bytes]]) -> str:
    """How fastcluster's answers relate to the model's reading: "agree", "stricter" (it refused a request the
    model accepts), "lenient" (it accepted one the model refuses), or a failure starting with "FAIL"."""
    for index, (status, body) in enumerate(answers):
        if index >= len(requests):
            return "agree" if status >= 400 or ending == "end" else "lenient"
        if status >= 400:
            return "stricter"
        request = requests[index]
        if request.target == b"/echo" and request.method != b"HEAD" and body != request.body:
            return f"FAIL: request {index} ends elsewhere: model {request.body!r}, /echo {body!r}"
    if len(answers) < len(requests):
        return f"FAIL: {len(requests)} requests in the model, {len(answers)} answered"
    return "agree"


def one_case(port: int, stream: bytes) -> str:
    requests, ending = parse_stream(stream)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(stream)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before reading it all
        data = http_exchange(sock, b"")
    answers = split_answers(data, requests)
    if answers is None:
        return f"FAIL: malformed answer {data[:200]!r}"
    return compare(requests, ending, answers)


def fuzz(port: int, rng: random.Random, cases: int | None = None, seconds: float | None = None) -> Counter:
    """Outcome counts; failures are kept as "FAIL ..." keys with the stream that caused them."""
    outcomes: Counter = Counter()
    stop = time.monotonic() + seconds if seconds else None
    done = 0
    while (cases is None or done < cases) and (stop is None or time.monotonic() < stop):
        stream = mutate(rng, rng.choice(SEEDS))
        outcome = one_case(port, stream)
        outcomes[f"{outcome} <- {stream!r}" if outcome.startswith("FAIL") else outcome] += 1
        done += 1
    return outcomes


def test_mutated_streams_frame_as_the_model_says(serve):
    server = serve("--header-timeout", "1", "--body-timeout", "1")
    [worker] = server.workers()
    for stream in SEEDS:
        assert one_case(server.port, stream) == "agree", stream
    outcomes = fuzz(server.port, random.Random(20261125), cases=600)
    assert not [outcome for outcome in outcomes if outcome.startswith("FAIL")], outcomes
    assert outcomes["agree"] > 100, outcomes
    assert server.workers() == [worker]


if __name__ == "__main__":
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    figures = fuzz(port, random.Random(seed), seconds=seconds)
    for outcome, count in figures.most_common():
        print(count, outcome)
