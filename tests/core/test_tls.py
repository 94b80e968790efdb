"""HTTPS: TLS in the worker's loop over real sockets, with a CA and certificates made for the tests."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys

import pytest

from tests.conftest import free_port, read_responses, tls_client_context

GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def tls_serve(serve, tls_files, *args: str, **kwargs):
    return serve("--ssl-certfile", tls_files["server.pem"], "--ssl-keyfile", tls_files["server.key"], *args,
                 **kwargs)


def tls_connect(port: int, context: ssl.SSLContext, server_name: str = "localhost") -> ssl.SSLSocket:
    return context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                               server_hostname=server_name)


def read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def s_client(port: int, *args: str, request: bytes = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: "
             b"close\r\n\r\n") -> str:
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-ign_eof", *args], input=request, capture_output=True, timeout=10)
    return done.stdout.decode("latin-1") + done.stderr.decode("latin-1")


def test_curl_gets_the_answer_over_https(serve, tls_files):
    server = tls_serve(serve, tls_files)
    done = subprocess.run(["curl", "-sS", "--cacert", tls_files["ca.pem"], f"https://localhost:{server.port}/"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, World!"


def test_keep_alive_and_pipelining(serve, tls_files):
    server = tls_serve(serve, tls_files)
    with tls_connect(server.port, tls_client_context(tls_files)) as sock:
        for _ in range(3):
            sock.sendall(GET)
            assert read_responses(sock, 1)[0][2] == b"Hello, World!"
        sock.sendall(GET * 50)
        answers = read_responses(sock, 50)
        assert [status for status, _, _ in answers] == [200] * 50


def test_large_request_and_response_bodies(serve, tls_files):
    server = tls_serve(serve, tls_files)
    body = os.urandom(3 << 20)
    with tls_connect(server.port, tls_client_context(tls_files)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        status, _, echoed = read_responses(sock, 1, timeout=20)[0]
        assert status == 200 and echoed == body
        sock.sendall(b"GET /bytes/5000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, streamed = read_responses(sock, 1, timeout=20)[0]
        assert status == 200 and len(streamed) == 5000000


def test_files_sent_by_sendfile_are_encrypted_in_the_worker(serve, tls_files, tmp_path):
    """sendfile cannot encrypt: a static file, and a large fixed answer kept in a memfd, are read and
    encrypted a record at a time, and arrive whole over a slow reader."""
    data = os.urandom(6 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    server = tls_serve(serve, tls_files, "--static", str(tmp_path))
    with tls_connect(server.port, tls_client_context(tls_files)) as sock:
        for _ in range(2):  # the second on the same connection: the first ended cleanly
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, headers, body = read_responses(sock, 1, timeout=20)[0]
            assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    fixed = tls_serve(serve, tls_files, "--response-size", str(1 << 20))
    with tls_connect(fixed.port, tls_client_context(tls_files)) as sock:
        sock.sendall(GET * 3)
        assert [len(body) for _, _, body in read_responses(sock, 3, timeout=20)] == [1 << 20] * 3


def test_plain_http_on_the_tls_port_gets_a_400_in_plain_text(serve, tls_files):
    server = tls_serve(serve, tls_files)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"The plain HTTP request was sent to HTTPS port\n")


def test_http_and_https_on_one_server(serve, tls_files):
    plain_port, secure_port = free_port(), free_port()
    tls_serve(serve, tls_files, "--bind", f"http://127.0.0.1:{plain_port}",
              "--bind", f"https://127.0.0.1:{secure_port}", port=plain_port)
    connection = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=5)
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"Hello, World!"
    secure = http.client.HTTPSConnection("localhost", secure_port, timeout=5,
                                         context=tls_client_context(tls_files))
    secure.request("GET", "/")
    assert secure.getresponse().read() == b"Hello, World!"


def test_alpn_chooses_http_1_1(serve, tls_files):
    server = tls_serve(serve, tls_files)
    assert "ALPN protocol: http/1.1" in s_client(server.port, "-alpn", "h2,http/1.1")


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_sessions_resume_on_every_worker(serve, tls_files, tmp_path, version):
    """Ticket keys are made by the master: a ticket from one worker resumes on all of them."""
    server = tls_serve(serve, tls_files, workers=2)
    session = str(tmp_path / "session.pem")
    first = s_client(server.port, version, "-sess_out", session)
    assert "New, " in first and "HTTP/1.1 200" in first
    for _ in range(6):  # reuseport spreads new connections over both workers
        again = s_client(server.port, version, "-sess_in", session)
        assert "Reused, " in again and "HTTP/1.1 200" in again, again


def test_minimum_version_and_ciphers(serve, tls_files):
    server = tls_serve(serve, tls_files, "--ssl-min-version", "TLSv1.3")
    assert "Protocol  : TLSv1.3" in s_client(server.port)
    assert "HTTP/1.1 200" not in s_client(server.port, "-tls1_2")
    chosen = tls_serve(serve, tls_files, "--ssl-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "Cipher is ECDHE-ECDSA-AES128-GCM-SHA256" in s_client(chosen.port, "-tls1_2")


def test_encrypted_key_with_its_password(serve, tls_files):
    server = serve("--ssl-certfile", tls_files["server.pem"], "--ssl-keyfile",
                   tls_files["server_encrypted.key"], "--ssl-keyfile-password", "secret")
    with tls_connect(server.port, tls_client_context(tls_files)) as sock:
        sock.sendall(GET)
        assert read_responses(sock, 1)[0][0] == 200


def test_sni_chooses_the_certificate(serve, tls_files):
    other = f"other.test={tls_files['other.pem']}:{tls_files['other.key']}"
    server = tls_serve(serve, tls_files, "--ssl-sni", other)
    for name in ("other.test", "localhost"):
        with tls_connect(server.port, tls_client_context(tls_files), server_name=name) as sock:
            assert dict(x[0] for x in sock.getpeercert()["subject"])["commonName"] == name


def test_mutual_tls_requires_a_client_certificate(serve, tls_files):
    from tests.app.client import APPS

    server = tls_serve(serve, tls_files, "asgi_apps:scope_echo", "--app-dir", APPS, "--ssl-ca-certs",
                       tls_files["ca.pem"], "--ssl-cert-reqs", "required")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tls_connect(server.port, tls_client_context(tls_files)) as sock:
            sock.sendall(GET)
            read_to_end(sock)
    secure = http.client.HTTPSConnection("localhost", server.port, timeout=5,
                                         context=tls_client_context(tls_files, client_cert=True))
    secure.request("GET", "/")
    import json

    scope = json.loads(secure.getresponse().read())
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] == 0x0304 and isinstance(tls["cipher_suite"], int)
    assert tls["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_name"] == "O=fastcluster,CN=test client"
    assert tls["client_cert_error"] is None


def test_wsgi_environ_over_https(serve, tls_files):
    import json

    from tests.app.client import APPS

    server = tls_serve(serve, tls_files, "wsgi_apps:environ_echo", "--app-dir", APPS, "--ssl-ca-certs",
                       tls_files["ca.pem"], "--ssl-cert-reqs", "optional")
    secure = http.client.HTTPSConnection("localhost", server.port, timeout=5,
                                         context=tls_client_context(tls_files, client_cert=True))
    secure.request("GET", "/")
    environ = json.loads(secure.getresponse().read())
    assert environ["wsgi.url_scheme"] == "https" and environ["HTTPS"] == "on"
    assert environ["SSL_PROTOCOL"] == "TLSv1.3" and environ["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert environ["SSL_CLIENT_S_DN"] == "O=fastcluster,CN=test client"
    assert environ["SSL_CLIENT_CERT"].startswith("-----BEGIN CERTIFICATE-----")


def test_a_stalled_handshake_is_cut_by_the_header_timeout(serve, tls_files):
    server = tls_serve(serve, tls_files, "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00")  # the start of a ClientHello, never finished
        assert sock.recv(100) == b""  # closed by the server, well before the client's 10 s


def test_half_open_handshakes_do_not_block_other_clients(serve, tls_files):
    server = tls_serve(serve, tls_files)
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    try:
        for sock in stalled:
            sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00")
        with tls_connect(server.port, tls_client_context(tls_files)) as sock:
            sock.sendall(GET)
            assert read_responses(sock, 1)[0][0] == 200
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("flags, message", [
    (["--ssl-certfile", "/nonexistent.pem"], "--ssl-certfile: cannot read /nonexistent.pem"),
    (["--ssl-certfile", "{ca.pem}"], "TLS: cannot load key"),
    (["--ssl-certfile", "{server.pem}", "--ssl-keyfile", "{other.key}"], "key values mismatch"),
    (["--ssl-certfile", "{server.pem}", "--ssl-keyfile", "{server_encrypted.key}", "--ssl-keyfile-password",
      "wrong"], "TLS: cannot load key"),
    (["--ssl-certfile", "{server.pem}", "--ssl-keyfile", "{server.key}", "--ssl-ciphers", "NOPE"],
     "no usable cipher in 'NOPE'"),
    (["--ssl-certfile", "{server.pem}", "--ssl-keyfile", "{server.key}", "--ssl-cert-reqs", "required"],
     "needs CA certificates"),
    (["--ssl-keyfile", "{server.key}"], "--ssl-keyfile needs --ssl-certfile"),
    (["--ssl-cert-reqs", "required"], "--ssl-cert-reqs needs --ssl-certfile"),
    (["--bind", "https://127.0.0.1:0"], "serving https needs --ssl-certfile"),
    (["--ssl-certfile", "{server.pem}", "--ssl-sni", "other.test"], "--ssl-sni: expected NAME=CERT:KEY"),
])
def test_bad_tls_settings_are_one_line_and_exit_2(tls_files, flags, message):
    args = [tls_files[flag[1:-1]] if flag.startswith("{") else flag for flag in flags]
    done = subprocess.run([sys.executable, "-m", "fastcluster", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcluster: error: ") and message in lines[0], lines


def served_common_name(port: int, tls_files) -> str:
    context = tls_client_context(tls_files)
    context.check_hostname = False
    with tls_connect(port, context) as sock:
        return dict(item[0] for item in sock.getpeercert()["subject"])["commonName"]


def test_reload_reads_renewed_certificates_and_a_broken_one_keeps_the_old_workers(serve, tls_files):
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix="fc-tls-")  # short: Unix socket paths are limited to 107 bytes
    control, cert, key = (os.path.join(where, name) for name in ("control.sock", "cert.pem", "key.pem"))
    shutil.copy(tls_files["server.pem"], cert)
    shutil.copy(tls_files["server.key"], key)
    server = serve("--control", control, "--ssl-certfile", cert, "--ssl-keyfile", key, workers=2)
    assert served_common_name(server.port, tls_files) == "localhost"

    def reload() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fastcluster", "reload", "--control", control],
                              capture_output=True, text=True, timeout=30)

    with open(cert, "w") as handle:
        handle.write("not a certificate\n")
    failed = reload()
    assert failed.returncode == 1 and "TLS: cannot load certificate" in failed.stderr, failed.stderr
    assert served_common_name(server.port, tls_files) == "localhost"
    shutil.copy(tls_files["other.pem"], cert)
    shutil.copy(tls_files["other.key"], key)
    assert reload().returncode == 0
    assert served_common_name(server.port, tls_files) == "other.test"
    server.stop()
    shutil.rmtree(where)


def test_an_asgi_app_sends_a_file_and_streams_over_tls(serve, tls_files, tmp_path):
    """The app's file (pathsend) takes the read-and-encrypt path, its streamed body the ordinary writes."""
    from tests.app.client import APPS

    data = os.urandom(3 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    server = tls_serve(serve, tls_files, "asgi_apps:pathsend", "--app-dir", APPS)
    secure = http.client.HTTPSConnection("localhost", server.port, timeout=20,
                                         context=tls_client_context(tls_files))
    secure.request("GET", f"/file?{tmp_path / 'big.bin'}")
    assert secure.getresponse().read() == data
    secure.request("GET", f"/stream?{tmp_path / 'progress'}")
    assert len(secure.getresponse().read()) == 320 * 65536


def test_websockets_run_over_tls_with_the_wss_scheme(serve, tls_files):
    from websockets.asyncio.client import connect

    from tests.app.client import APPS

    server = tls_serve(serve, tls_files, "websocket_apps:raw", "--app-dir", APPS)

    async def talk() -> dict:
        async with connect(f"wss://localhost:{server.port}/room", ssl=tls_client_context(tls_files)) as ws:
            await ws.send("x" * 100_000)
            scope = json.loads(await ws.recv())
            assert await ws.recv() == "x" * 100_000
            return scope

    assert asyncio.run(talk())["scheme"] == "wss"


def test_the_built_in_websocket_echo_runs_over_tls(serve, tls_files):
    from websockets.asyncio.client import connect

    server = tls_serve(serve, tls_files)

    async def talk() -> None:
        async with connect(f"wss://localhost:{server.port}/ws", ssl=tls_client_context(tls_files)) as ws:
            for message in ("hello", b"\x00" * 70_000):
                await ws.send(message)
                assert await ws.recv() == message

    asyncio.run(talk())
