"""Running behind a proxy, over real sockets: X-Forwarded-For, X-Forwarded-Proto and Forwarded from trusted
peers set the ASGI client and scheme and the WSGI REMOTE_ADDR, REMOTE_PORT and wsgi.url_scheme, and the
access log; from other peers, or malformed, they change nothing. WSGI drops header names with "_"."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.app.client import APPS
from tests.conftest import read_responses, wait_until

APPS_BY_INTERFACE = {"asgi": "asgi_apps:scope_echo", "wsgi": "wsgi_apps:environ_echo"}


def app(serve, interface: str, *flags: str, **kwargs):
    return serve("--app-dir", APPS, APPS_BY_INTERFACE[interface], *flags, **kwargs)


def request(sock: socket.socket, headers: list[tuple[str, str]], path: str = "/") -> dict:
    """One request with these header lines (repeats kept), on sock: the app's JSON answer."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{lines}\r\n".encode("latin-1"))
    [(status, _, body)] = read_responses(sock, 1)
    assert status == 200, body
    return json.loads(body)


def seen(server, interface: str, *headers: tuple[str, str]) -> tuple[str, int, str]:
    """(client host, client port, scheme) as the app saw them for a request with these headers."""
    with server.connect() as sock:
        answer = request(sock, list(headers))
    return client_of(answer, interface)


def client_of(answer: dict, interface: str) -> tuple:
    if interface == "asgi":
        client = answer["client"]
        return (client[0], client[1], answer["scheme"]) if client else (None, None, answer["scheme"])
    return answer["REMOTE_ADDR"], int(answer["REMOTE_PORT"] or -1), answer["wsgi.url_scheme"]


@pytest.fixture(params=["asgi", "wsgi"])
def interface(request) -> str:
    return request.param


def test_a_trusted_peer_sets_client_and_scheme(serve_shared, interface):
    server = app(serve_shared, interface)  # the test client connects from 127.0.0.1, trusted by default
    host, port, scheme = seen(server, interface)
    assert (host, scheme) == ("127.0.0.1", "http") and port > 0
    assert seen(server, interface, ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")) \
        == ("203.0.113.7", 0, "https")
    # Only the scheme, or only the client.
    assert seen(server, interface, ("X-Forwarded-Proto", "HTTPS"))[::2] == ("127.0.0.1", "https")
    assert seen(server, interface, ("X-Forwarded-Proto", "wss"))[2] == "https"
    assert seen(server, interface, ("X-Forwarded-For", "2001:DB8::1")) == ("2001:db8::1", 0, "http")
    assert seen(server, interface, ("X-Forwarded-For", "198.51.100.2:4711")) == ("198.51.100.2", 4711, "http")
    # What headers said is remembered; a connection still gets its own peer where they name no client.
    with server.connect() as first, server.connect() as second:
        answers = [client_of(request(sock, [("X-Forwarded-Proto", "https")]), interface)
                   for sock in (first, second, first)]
        ports = [first.getsockname()[1], second.getsockname()[1], first.getsockname()[1]]
    assert answers == [("127.0.0.1", port, "https") for port in ports]


def test_an_untrusted_peer_changes_nothing(serve, interface):
    for server in (app(serve, interface, "--forwarded-allow-ips", "10.0.0.1,192.168.0.0/16"),
                   app(serve, interface, env={"FORWARDED_ALLOW_IPS": "10.0.0.1"}),
                   app(serve, interface, "--no-proxy-headers")):
        host, _, scheme = seen(server, interface, ("X-Forwarded-For", "203.0.113.7"),
                               ("X-Forwarded-Proto", "https"), ("Forwarded", "for=198.51.100.1;proto=https"))
        assert (host, scheme) == ("127.0.0.1", "http"), server.args


def test_the_client_is_the_right_most_untrusted_hop(serve, interface):
    server = app(serve, interface, "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")
    # A client's own X-Forwarded-For comes first: what the proxies appended after it is what counts.
    assert seen(server, interface, ("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.2.3"))[0] == "203.0.113.7"
    # Repeated header lines are one list, in order.
    assert seen(server, interface, ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.8"),
                ("X-Forwarded-For", "10.0.0.2"))[0] == "203.0.113.8"
    # Garbage to the left of the client is the client's business.
    assert seen(server, interface, ("X-Forwarded-For", "not an address, 203.0.113.9"))[0] == "203.0.113.9"
    # Every hop trusted: the left-most is the client.
    assert seen(server, interface, ("X-Forwarded-For", "10.0.0.5, 10.0.0.6"))[0] == "10.0.0.5"
    # Proxies that append to both lists: the scheme the client used is at its hop's place.
    assert seen(server, interface, ("X-Forwarded-For", "203.0.113.7, 10.0.0.6"),
                ("X-Forwarded-Proto", "https, http"))[::2] == ("203.0.113.7", "https")
    everyone = app(serve, interface, "--forwarded-allow-ips", "*")
    assert seen(everyone, interface, ("X-Forwarded-For", "203.0.113.1, 203.0.113.2"))[0] == "203.0.113.1"


def test_forwarded_header(serve, interface):
    server = app(serve, interface, "--forwarded-allow-ips", "127.0.0.1,192.0.2.0/24")

    def ask(*values: str) -> tuple:
        return seen(server, interface, *[("Forwarded", value) for value in values])

    assert ask('for="[2001:db8:cafe::17]:4711";proto=https') == ("2001:db8:cafe::17", 4711, "https")
    assert ask("For=198.51.100.17;Proto=http;by=192.0.2.43") == ("198.51.100.17", 0, "http")
    # Walked from the right past trusted proxies; the chosen element's proto is the client's.
    assert ask('for=198.51.100.1;proto=https, for="192.0.2.60:88";proto=http') == ("198.51.100.1", 0, "https")
    assert ask("for=6.6.6.6", "for=198.51.100.2") == ("198.51.100.2", 0, "http")
    # Obfuscated identifiers and unknown stand for themselves.
    assert ask('for="_hidden:_port";proto=https') == ("_hidden", 0, "https")
    assert ask("for=unknown")[0] == "unknown"
    # An element without for= still tells the scheme.
    assert ask("proto=https;host=example.com")[::2] == ("127.0.0.1", "https")
    # X-Forwarded-* is what most proxies set: with it, a Forwarded a client sent is not read.
    assert seen(server, interface, ("Forwarded", "for=6.6.6.6;proto=https"),
                ("X-Forwarded-For", "203.0.113.7"))[::2] == ("203.0.113.7", "http")


MALFORMED = [
    [("X-Forwarded-For", "")],
    [("X-Forwarded-For", "garbage")],
    [("X-Forwarded-For", "203.0.113.7, ")],
    [("X-Forwarded-For", "1.2.3.4:99999")],
    [("X-Forwarded-For", "[1.2.3.4]:80")],
    [("X-Forwarded-For", "01.2.3.4")],
    [("X-Forwarded-For", "\u00ff\u00fe")],
    [("X-Forwarded-Proto", "ftp")],
    [("X-Forwarded-Proto", "")],
    [("Forwarded", "for")],
    [("Forwarded", 'for="[::1')],
    [("Forwarded", "for=[::1]:80")],
    [("Forwarded", "for=1.2.3.4;for=5.6.7.8")],
    [("Forwarded", 'for="unterminated')],
    [("Forwarded", "for=a b")],
    [("Forwarded", "for=999.0.0.1;proto=https")],
    [("Forwarded", "proto=gopher")],
    [("Forwarded", ";;,,")],
]


def test_malformed_values_are_ignored(serve_shared, interface):
    server = app(serve_shared, interface)
    with server.connect() as sock:  # one connection: no malformed value may end it
        for headers in MALFORMED:
            host, _, scheme = client_of(request(sock, headers), interface)
            assert (host, scheme) == ("127.0.0.1", "http"), headers


def test_a_unix_socket_peer_is_trusted_by_default(serve, interface, tmp_path):
    for flags, expected in (((), ("203.0.113.7", "https")),
                            (("--forwarded-allow-ips", "127.0.0.1"), (None, "http")),
                            (("--forwarded-allow-ips", "unix:"), ("203.0.113.7", "https"))):
        path = str(tmp_path / f"fc{len(flags)}{expected[1]}.sock")
        app(serve, interface, "--bind", f"unix:{path}", *flags, port=None)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            assert wait_until(lambda sock=sock, path=path: sock.connect_ex(path) == 0)
            answer = request(sock, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
        host, _, scheme = client_of(answer, interface)
        assert (host or None, scheme) == expected, flags


@pytest.mark.parametrize("log_format", ["common", "json"])
def test_the_access_log_shows_the_resolved_client(serve, interface, tmp_path, log_format):
    path = tmp_path / "access.log"
    server = app(serve, interface, "--access-log", str(path), "--access-log-format", log_format)
    with server.connect() as sock:
        request(sock, [("X-Forwarded-For", "203.0.113.7")], "/proxied")
        request(sock, [], "/direct")
    server.stop()  # which writes what the worker buffered
    lines = path.read_text().splitlines()
    [proxied] = [line for line in lines if "/proxied" in line]
    [direct] = [line for line in lines if "/direct" in line]
    if log_format == "json":
        assert json.loads(proxied)["remote"] == "203.0.113.7" and json.loads(direct)["remote"] == "127.0.0.1"
    else:
        assert proxied.startswith("203.0.113.7 - - [") and direct.startswith("127.0.0.1 - - ["), lines


def test_wsgi_drops_header_names_with_underscores(serve):
    headers = [("X-Test", "dashed"), ("X_Test", "underscored"), ("X_Forwarded_For", "6.6.6.6"),
               ("Content_Type", "text/evil")]
    server = app(serve, "wsgi")
    with server.connect() as sock:
        for _ in range(2):  # the second time from the header-name cache
            environ = request(sock, headers)
            assert environ["HTTP_X_TEST"] == "dashed" and environ["REMOTE_ADDR"] == "127.0.0.1"
            assert "HTTP_X_FORWARDED_FOR" not in environ and "HTTP_CONTENT_TYPE" not in environ
            assert "CONTENT_TYPE" not in environ
    allowed = app(serve, "wsgi", "--allow-underscore-headers")
    with allowed.connect() as sock:
        environ = request(sock, headers)
    assert environ["HTTP_X_TEST"] == "dashed,underscored" and environ["HTTP_X_FORWARDED_FOR"] == "6.6.6.6"
    assert environ["REMOTE_ADDR"] == "127.0.0.1", "an underscored name is never a proxy header"


def test_asgi_keeps_header_names_with_underscores(serve_shared):
    server = app(serve_shared, "asgi")
    with server.connect() as sock:
        scope = request(sock, [("X-Test", "dashed"), ("X_Test", "underscored")])
    assert ["x-test", "dashed"] in scope["headers"] and ["x_test", "underscored"] in scope["headers"]


@pytest.mark.parametrize("value", ["10.0.0.300", "localhost", "10.0.0.0/33", "127.0.0.1,,::1", ""])
def test_a_bad_allow_list_is_one_line_and_status_2(value):
    for flags, env, source in ((["--forwarded-allow-ips", value], {}, "--forwarded-allow-ips"),
                               ([], {"FORWARDED_ALLOW_IPS": value or ","}, "FORWARDED_ALLOW_IPS")):
        command = [sys.executable, "-m", "fastcluster", "serve", "asgi_apps:scope_echo", *flags]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=APPS,
                                env={**os.environ, **env})
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"fastcluster: error: {source}: "), lines
