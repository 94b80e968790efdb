"""HTTP/1.1 parsing cases modelled on the corpora other servers publish: gunicorn's tests/requests
(valid/ and invalid/), llhttp's test/request/*.md fixtures and the request-smuggling vectors of
aws/http-desync-guardian. Our own cases, written from what each of theirs tests.

Each case is sent whole, split at every byte and byte by byte; the answer is the one nginx gives (the
`nginx` column notes where we are stricter), and the worker survives all of it.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import check_refused, http_exchange

H = b"Host: t\r\n"
TE = b"Transfer-Encoding: chunked\r\n"
CLOSE = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
GET = b"GET / HTTP/1.1\r\n" + H
POST = b"POST / HTTP/1.1\r\n" + H

# name: (request, how many requests it holds). Each is followed by CLOSE; all get 200.
VALID = {
    # gunicorn valid/: plain requests and header shapes
    "get with headers": (b"GET /a/b?c=d HTTP/1.1\r\n" + H + b"User-Agent: curl/7\r\nAccept: */*\r\n\r\n", 1),
    "empty value": (GET + b"X-Empty:\r\n\r\n", 1),
    "value with inner spaces and tabs": (GET + b"X-A: a \t b\r\n\r\n", 1),
    "repeated field": (GET + b"X-R: 1\r\nX-R: 2\r\n\r\n", 1),
    "percent-encoded path": (b"GET /%2F%20x?%3D=%26 HTTP/1.1\r\n" + H + b"\r\n", 1),
    "fragment in the target": (b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n", 1),
    "absolute-form with port": (b"GET http://t:8080/a HTTP/1.1\r\n" + H + b"\r\n", 1),
    "http/1.0 keep-alive": (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1),
    "content-length body": (POST + b"Content-Length: 5\r\n\r\nhello", 1),
    "content-length zero": (b"PUT / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", 1),
    "leading zeros in content-length": (POST + b"Content-Length: 005\r\n\r\nhello", 1),
    "pipelined": (b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n", 2),
    # llhttp transfer-encoding.md: chunk sizes, extensions, trailers
    "chunked lowercase size": (b"PUT / HTTP/1.1\r\n" + H + TE + b"\r\na\r\n0123456789\r\n0\r\n\r\n", 1),
    "chunked uppercase size": (b"PUT / HTTP/1.1\r\n" + H + TE + b"\r\nA\r\n0123456789\r\n0\r\n\r\n", 1),
    "chunked zero-padded last chunk": (
        POST + TE + b"\r\n5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n", 1),
    "chunked with trailers": (
        POST + TE + b"\r\n5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n", 1),
    "chunk extensions": (
        POST + TE + b"\r\n5;a;b=c;d=e\r\nhello\r\n6;x\r\n world\r\n0\r\n\r\n", 1),
    "quoted chunk extension": (
        POST + TE + b'\r\n5;a="b \\"c\\"; d"\r\nhello\r\n0\r\n\r\n', 1),
    "whitespace after chunk extension semicolons": (  # BWS, RFC 9112 §7.1.1; nginx takes it too
        POST + TE + b'\r\n5; a=b\r\nhello\r\n6;\tx; y="z"\r\n world\r\n0;  \t e\r\n\r\n', 1),
    "transfer-encoding name in any case": (
        POST + b"transfer-ENCODING: Chunked\r\n\r\n0\r\n\r\n", 1),
    "chunked then pipelined": (
        POST + TE + b"\r\n1\r\nA\r\n0\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", 2),
    # aws/http-desync-guardian acceptable / rfc-compliant
    "content-length with surrounding whitespace": (
        POST + b"Content-Length:  5 \r\n\r\nhello", 1),
    "options asterisk": (b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 1),  # nginx: 400, it serves no "*"
}

CL = b"Content-Length: "
# name: (request, our status, nginx's status when it differs).
INVALID = {
    # llhttp invalid.md: protocol and method
    "ice protocol with get": (b"GET /music ICE/1.0\r\n" + H + b"\r\n", 400, None),
    "ice protocol with source": (b"SOURCE /music ICE/1.0\r\n" + H + b"\r\n", 400, None),
    "not really ice": (b"GET /music IHTTP/1.0\r\n" + H + b"\r\n", 400, None),
    "rtsp with put": (b"PUT /music RTSP/1.0\r\n" + H + b"\r\n", 400, None),
    "announce over http": (b"ANNOUNCE /music HTTP/1.0\r\n\r\n", 400, 200),
    "method with a letter too many": (b"MKCOLA / HTTP/1.1\r\n" + H + b"\r\n", 400, 200),
    "http/5.6": (b"GET / HTTP/5.6\r\n" + H + b"\r\n", 505, None),
    "lowercase method": (b"get / HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    # llhttp invalid.md: line endings and header tokens
    "headers separated by cr": (GET + b"Foo: 1\rBar: 2\r\n\r\n", 400, None),
    "headers separated by lf": (
        POST + b"x:x\nTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n", 400, 200),
    "cr and junk after the head": (
        GET + b"Connection: close\r\n\rZGET /evil: HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    "empty value ended by cr": (POST + b"x:\rTransfer-Encoding: chunked\r\n\r\n", 400, None),
    "header token with @": (GET + b"Fo@: Failure\r\n\r\n", 400, 200),
    "header token with control bytes": (GET + b"Foo\x01test: Bar\r\n\r\n", 400, None),
    "empty header name": (GET + b": Bar\r\n\r\n", 400, None),
    "folded header name": (GET + b"name\r\n : value\r\n\r\n", 400, None),
    "corrupted connection header": (
        GET + b"Connection\r\x1b\x35\xd5eep-Alive\r\n\r\n", 400, None),
    "missing cr between headers": (
        GET + b"Dummy: x\nContent-Length: 23\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
        400, 200),
    "space after the request line": (b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", 400, None),
    "only lf": (b"POST / HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\n\n1\nA\n0\n\n", 400, 200),
    "spaces before a header": (
        b"POST /hello HTTP/1.1\r\n" + H + b"Foo: bar\r\n Content-Length: 38\r\n\r\n", 400, None),
    # llhttp transfer-encoding.md
    "empty transfer-encoding with content-length": (
        POST + b"Transfer-Encoding:\r\nContent-Length: 5\r\n\r\nhello", 400, 501),
    "no semicolon before a chunk extension": (
        POST + TE + b"\r\n2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n", 400, 200),
    "nothing after the chunk extension semicolon": (
        POST + TE + b"\r\n2;\r\naa\r\n0\r\n\r\n", 400, 200),
    "whitespace then an empty chunk extension name": (
        POST + TE + b"\r\n5; =b\r\nhello\r\n0\r\n\r\n", 400, 200),
    "whitespace then nothing after the semicolon": (POST + TE + b"\r\n5; \r\nhello\r\n0\r\n\r\n", 400, 200),
    "whitespace before a chunk extension's semicolon": (
        POST + TE + b"\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n", 400, 200),
    "whitespace around a chunk extension's equals sign": (
        POST + TE + b"\r\n5;a = b\r\nhello\r\n0\r\n\r\n", 400, 200),
    "tab inside a chunk extension name": (POST + TE + b"\r\n5;a\tb=c\r\nhello\r\n0\r\n\r\n", 400, 200),
    "whitespace after a semicolon in a trailer field name": (
        POST + TE + b"\r\n5\r\nhello\r\n0\r\nX; a: b\r\n\r\n", 400, 200),
    "unbalanced chunk extension quote": (
        POST + TE + b'\r\n5;a="abc";b="def; ghi\r\nhello\r\n0\r\n\r\n', 400, 200),
    "transfer-encoding pigeons": (POST + b"Transfer-Encoding: pigeons\r\n\r\n", 501, None),
    "identity with content-length": (
        POST + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nWorld", 501, None),
    # gunicorn invalid/
    "space before the method": (b" " + GET + b"\r\n", 400, None),
    "tab before the method": (b"\t" + GET + b"\r\n", 400, None),
    "tab in the target": (b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    "tab after a semicolon in the target": (b"GET /;\tx HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    "obs-text in the target": (b"GET /a\x80b HTTP/1.1\r\n" + H + b"\r\n", 400, 200),
    "nul inside the method": (b"GET\x00PROXY /foo HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    "proxy protocol line": (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + GET + b"\r\n", 400, None),
    "http/0.1": (b"GET / HTTP/0.1\r\n" + H + b"\r\n", 505, 400),
    "version with letters": (b"GET / HTTP/1.a\r\n" + H + b"\r\n", 400, None),
    "obs-text in a field name": (GET + b"Content-Length\xff: 3\r\n" + CL + b"3\r\n\r\nabc",
                                 400, 200),
    "obs-fold": (GET + b"Long: a\r\n  b\r\n\r\n", 400, None),
    "bel in a value": (GET + b"X: a\x07b\r\n\r\n", 400, 200),
    "del in a value": (GET + b"X: a\x7fb\r\n\r\n", 400, 200),
    "no chunk size": (POST + TE + b"\r\n\r\nhello\r\n0\r\n\r\n", 400, None),
    "chunk extension without a size": (POST + TE + b"\r\n ;foo=bar\r\nhello\r\n0\r\n\r\n",
                                       400, None),
    "chunked then identity": (
        POST + TE + b"Transfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, None),
    "chunk size with a minus": (POST + TE + b"\r\n-5\r\nhello\r\n0\r\n\r\n", 400, None),
    "chunk size with a plus": (POST + TE + b"\r\n+5\r\nhello\r\n0\r\n\r\n", 400, None),
    "0x chunk size": (POST + TE + b"\r\n0x5\r\nhello\r\n0\r\n\r\n", 400, None),
    "chunk data longer than its size": (POST + TE + b"\r\n5\r\nhelloXX\r\n0\r\n\r\n", 400, None),
    "content-length and chunked": (POST + CL + b"3\r\n" + TE + b"\r\n0\r\n\r\n", 400, None),
    "relative target": (b"GET foo/bar HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    "authority-form without connect": (b"GET t:80 HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    "asterisk without options": (b"DELETE * HTTP/1.1\r\n" + H + b"\r\n", 400, None),
    # aws/http-desync-guardian severe and bad-header-characters
    "two different content-lengths": (POST + CL + b"10\r\n" + CL + b"1\r\n\r\nx", 400, None),
    "content-length list": (POST + CL + b"1,1\r\n\r\nx", 400, None),
    "content-length with a space inside": (POST + CL + b"1 1\r\n\r\nx", 400, None),
    "content-length with a dot": (POST + CL + b"1.1\r\n\r\nx", 400, None),
    "content-length past 64 bits": (POST + CL + b"18446744073709551616\r\n\r\nx", 400, None),
    "content-length with a control byte": (POST + CL + b"1\x11\r\n\r\nx", 400, None),
    "xchunked": (POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, None),
    "chunked with a control byte": (
        POST + b"Transfer-Encoding: chunked\x11\r\n\r\n0\r\n\r\n", 400, 501),
    "chunked twice in one field": (
        POST + b"Transfer-Encoding: chunked,chunked\r\n\r\n0\r\n\r\n", 400, 501),
    "chunked in two fields": (POST + TE + TE + b"\r\n0\r\n\r\n", 400, None),
    "lf inside a value": (POST + b"X: v\n Transfer-Encoding: chunked\r\n\r\n", 400, None),
    "nul in a field name": (POST + b"Bad\x00: 1\r\n\r\n", 400, None),
    "nul at the start of a line": (POST + b"\x00Bad: v\r\n\r\n", 400, None),
    "nul in a value": (POST + b"X: \x00v\r\n\r\n", 400, None),
    "space after content-length's name": (POST + b"Content-Length : 1\r\n" + CL + b"2\r\n\r\nab",
                                          400, None),
    "space before content-length's name": (
        POST + b" Content-Length: 1\r\n" + CL + b"2\r\n\r\nab", 400, None),
    "space after transfer-encoding's name": (
        POST + b"Transfer-Encoding : chunked\r\n" + TE + b"\r\n0\r\n\r\n", 400, None),
    "control byte in the method": (b"bad_method\x01 / HTTP/1.1\r\n" + H + b"\r\n", 400, None),
}

# name: (a valid request, what follows it). The request is answered, what follows gets a 400 and the
# connection closes, as nginx does.
FOLLOWED_BY_JUNK = {
    "chunked body then junk": (POST + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n", b"junk\r\n\r\n"),
    "chunked body then an unknown method": (
        POST + TE + b"\r\n5\r\nhello\r\n0\r\n\r\n", b"XXXX / HTTP/1.1\r\n" + H + b"\r\n"),
    "content-length body then junk": (POST + CL + b"5\r\n\r\nhello", b"junk\r\n\r\n"),
}


@pytest.fixture(scope="module")
def server(serve_shared):
    started = serve_shared("--max-body", "1000")
    [started.worker] = started.workers()
    return started


def deliveries(data: bytes) -> list[list[bytes]]:
    """The ways each case is sent: whole, in two writes split at every byte, and one byte per write."""
    return [[data]] + [[data[:cut], data[cut:]] for cut in range(1, len(data))] + [[bytes([b]) for b in data]]


def exchange(port: int, pieces: list[bytes], tail: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces[:-1]:
            sock.sendall(piece)
        return http_exchange(sock, pieces[-1] + tail)


@pytest.mark.parametrize("name", VALID)
def test_valid(server, name):
    data, requests = VALID[name]
    for pieces in deliveries(data):
        answer = exchange(server.port, pieces, CLOSE)
        assert answer.count(b"HTTP/1.1 200 OK\r\n") == requests + 1, (len(pieces), answer[:300])
    assert server.workers() == [server.worker]


@pytest.mark.parametrize("name", INVALID)
def test_invalid(server, name):
    data, status, _ = INVALID[name]
    for pieces in deliveries(data):
        check_refused(exchange(server.port, pieces, CLOSE), status)
    assert server.workers() == [server.worker]


@pytest.mark.parametrize("name", FOLLOWED_BY_JUNK)
def test_junk_after_a_request(server, name):
    request, junk = FOLLOWED_BY_JUNK[name]
    for pieces in deliveries(request + junk):
        answer = exchange(server.port, pieces, CLOSE)
        first, rest = answer.split(b"HTTP/1.1 400 ", 1) if b"HTTP/1.1 400 " in answer else (answer, b"")
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.count(b"HTTP/1.1 ") == 1, answer[:300]
        check_refused(b"HTTP/1.1 400 " + rest, 400)
    assert server.workers() == [server.worker]


def test_whitespace_after_chunk_extension_semicolons_keeps_the_body(server):
    """The body read around `; ` and `;\t` is the body sent, however the request is split."""
    data = b"POST /echo HTTP/1.1\r\n" + H + TE + b"\r\n5; a=b\r\nhello\r\n6;\t x\r\n world\r\n0; e\r\n\r\n"
    for pieces in deliveries(data):
        answer = exchange(server.port, pieces, CLOSE)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]
        assert answer.split(b"\r\n\r\n", 1)[1].startswith(b"hello world"), answer[:300]
