"""Static files under --static DIR, over real sockets: bodies, types, conditional and range requests, and
every known way of asking for a path outside DIR."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import Server, free_port, read_responses

BIG = os.urandom(3_000_000)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_bytes(b"SECRET")
    (root / "www").mkdir()
    www = root / "www"
    (www / "index.html").write_bytes(b"<h1>home</h1>")
    (www / "big.bin").write_bytes(BIG)
    (www / "empty.txt").write_bytes(b"")
    (www / "docs").mkdir()
    (www / "docs" / "index.html").write_bytes(b"docs index")
    (www / "docs" / "style.css").write_bytes(b"body{}")
    (www / "bare").mkdir()
    (www / "escape").symlink_to(outside / "secret.txt")
    (www / "escape-dir").symlink_to(outside)
    (www / "inside-link.txt").symlink_to(www / "docs" / "style.css")
    (root / "sibling.txt").write_bytes(b"SECRET")
    server = Server(["--workers", "1", "--static", str(www)], free_port())
    server.wait_ready(1)
    yield server, www
    code = server.stop()
    output = server.read_output()
    assert "Traceback" not in output and "still counted" not in output, output
    assert code == 0, output


def get(server, path: str, headers: dict | None = None, method: str = "GET"):
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    client.request(method, path, headers=headers or {})
    response = client.getresponse()
    response.body = response.read()
    client.close()
    return response


def raw(server, target: bytes) -> tuple[int, bytes]:
    with server.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = read_responses(sock, 1)[0]
    return status, body


def test_files_with_types_and_validators(site):
    server, _ = site
    home = get(server, "/")
    assert (home.status, home.body) == (200, b"<h1>home</h1>")
    assert home.getheader("Content-Type") == "text/html"
    assert home.getheader("ETag") and home.getheader("Last-Modified")
    css = get(server, "/docs/style.css")
    assert (css.body, css.getheader("Content-Type")) == (b"body{}", "text/css")
    assert get(server, "/docs/").body == b"docs index"
    assert get(server, "/big.bin").body == BIG
    assert get(server, "/empty.txt").body == b""
    assert get(server, "/inside-link.txt").body == b"body{}"
    assert get(server, "/docs/style.css?v=3").body == b"body{}"


def test_builtin_routes_answer_where_no_file_matches(site):
    server, _ = site
    assert get(server, "/json").body == b'{"message":"Hello, World!"}'
    assert get(server, "/status/418").status == 418
    assert get(server, "/no/such/file").body == b"Hello, World!"


def test_directory_without_index_is_404(site):
    server, _ = site
    assert get(server, "/bare/").status == 404
    assert get(server, "/bare").status == 404


def test_head_sends_headers_only(site):
    server, _ = site
    with server.connect() as sock:
        sock.sendall(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /docs/style.css HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while not data.endswith(b"body{}"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert b"Content-Length: %d\r\n" % len(BIG) in data
    assert data.count(b"HTTP/1.1 200 OK") == 2 and len(data) < 2000


def test_conditional_requests(site):
    server, _ = site
    first = get(server, "/docs/style.css")
    etag, modified = first.getheader("ETag"), first.getheader("Last-Modified")
    assert get(server, "/docs/style.css", {"If-None-Match": etag}).status == 304
    assert get(server, "/docs/style.css", {"If-None-Match": f'"other", W/{etag}'}).status == 304
    assert get(server, "/docs/style.css", {"If-None-Match": "*"}).status == 304
    assert get(server, "/docs/style.css", {"If-None-Match": '"other"'}).status == 200
    not_modified = get(server, "/docs/style.css", {"If-Modified-Since": modified})
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert not_modified.getheader("ETag") == etag
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert get(server, "/docs/style.css", {"If-Modified-Since": old}).status == 200
    # If-None-Match wins over If-Modified-Since.
    both = {"If-None-Match": '"x"', "If-Modified-Since": modified}
    assert get(server, "/docs/style.css", both).status == 200
    assert get(server, "/docs/style.css", {"If-Modified-Since": "garbage"}).status == 200


@pytest.mark.parametrize("spec, first, last", [
    ("bytes=0-0", 0, 0),
    ("bytes=100-199", 100, 199),
    ("bytes=2999990-", 2999990, 2999999),
    ("bytes=-10", 2999990, 2999999),
    ("bytes=0-99999999", 0, 2999999),
    ("bytes=-99999999", 0, 2999999),
])
def test_ranges(site, spec, first, last):
    server, _ = site
    response = get(server, "/big.bin", {"Range": spec})
    assert response.status == 206
    assert response.getheader("Content-Range") == f"bytes {first}-{last}/{len(BIG)}"
    assert response.body == BIG[first:last + 1]


@pytest.mark.parametrize("spec", ["bytes=3000000-", "bytes=5000000-5000010", "bytes=-0"])
def test_unsatisfiable_range_is_416(site, spec):
    server, _ = site
    response = get(server, "/big.bin", {"Range": spec})
    assert response.status == 416
    assert response.getheader("Content-Range") == f"bytes */{len(BIG)}"


@pytest.mark.parametrize("spec", ["items=0-5", "bytes=5-1", "bytes=abc", "bytes=0-1,5-6"])
def test_ranges_we_ignore_get_the_whole_file(site, spec):
    server, _ = site
    response = get(server, "/big.bin", {"Range": spec})
    assert response.status == 200 and len(response.body) == len(BIG)


def test_if_range(site):
    server, _ = site
    etag = get(server, "/big.bin", method="HEAD").getheader("ETag")
    assert get(server, "/big.bin", {"Range": "bytes=0-9", "If-Range": etag}).status == 206
    assert get(server, "/big.bin", {"Range": "bytes=0-9", "If-Range": '"stale"'}).status == 200


TRAVERSALS = [
    b"/../sibling.txt",
    b"/../../../../etc/passwd",
    b"/docs/../../sibling.txt",
    b"/%2e%2e/sibling.txt",
    b"/%2E%2E/%2e%2e/etc/passwd",
    b"/%2e%2e%2fsibling.txt",
    b"/docs/%2e%2e%2f%2e%2e%2fsibling.txt",
    b"/..%2fsibling.txt",
    b"/.%2e/sibling.txt",
    b"/%252e%252e/sibling.txt",
    b"/..%5csibling.txt",
    b"/docs/..\\..\\sibling.txt",
    b"/escape",
    b"/escape-dir/secret.txt",
    b"/index.html%00.txt",
    b"/big.bin%00",
    b"http://t/../sibling.txt",
    b"//../sibling.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
def test_no_path_leaves_the_directory(site, target):
    server, _ = site
    status, body = raw(server, target)
    assert b"SECRET" not in body and b"root:" not in body
    assert status in (400, 404) or body == b"Hello, World!"


def test_changed_file_is_seen_within_a_second_or_two(site):
    server, www = site
    path = www / "changing.txt"
    path.write_bytes(b"one")
    assert get(server, "/changing.txt").body == b"one"
    time.sleep(0.01)
    path.write_bytes(b"two!")
    deadline = time.monotonic() + 3
    while get(server, "/changing.txt").body != b"two!":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_static_must_be_a_directory(tmp_path):
    command = [sys.executable, "-m", "fastcluster", "serve", "--static", str(tmp_path / "none")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("fastcluster: error: --static")
