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

from fastcluster.control import request
from fastcluster.tls import kernel_tls
from tests.conftest import free_port, read_responses, tls_client_context, wait_until

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


def test_curl_gets_the_answer_over_https(serve_shared, tls_files):
    server = tls_serve(serve_shared, tls_files)
    done = subprocess.run(["curl", "-sS", "--cacert", tls_files["ca.pem"], f"https://localhost:{server.port}/"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, World!"


def test_keep_alive_and_pipelining(serve_shared, tls_files):
    server = tls_serve(serve_shared, tls_files)
    with tls_connect(server.port, tls_client_context(tls_files)) as sock:
        for _ in range(3):
            sock.sendall(GET)
            assert read_responses(sock, 1)[0][2] == b"Hello, World!"
        sock.sendall(GET * 50)
        answers = read_responses(sock, 50)
        assert [status for status, _, _ in answers] == [200] * 50


def test_large_request_and_response_bodies(serve_shared, tls_files):
    server = tls_serve(serve_shared, tls_files)
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


def test_plain_http_on_the_tls_port_gets_a_400_in_plain_text(serve_shared, tls_files):
    server = tls_serve(serve_shared, tls_files)
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


def test_alpn_chooses_http_1_1(serve_shared, tls_files):
    server = tls_serve(serve_shared, tls_files)
    assert "ALPN protocol: http/1.1" in s_client(server.port, "-alpn", "h2,http/1.1")


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_sessions_resume_on_every_worker(serve_shared, tls_files, tmp_path, version):
    """Ticket keys are made by the master: a ticket from one worker resumes on all of them."""
    server = tls_serve(serve_shared, tls_files, workers=2)
    session = str(tmp_path / "session.pem")
    first = s_client(server.port, version, "-sess_out", session)
    assert "New, " in first and "HTTP/1.1 200" in first
    for _ in range(6):  # reuseport spreads new connections over both workers
        again = s_client(server.port, version, "-sess_in", session)
        assert "Reused, " in again and "HTTP/1.1 200" in again, again


def control_path() -> str:
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="fc-tls-"), "control.sock")  # short: Unix paths ≤ 107 bytes


def control(path: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", *command, "--control", path],
                          capture_output=True, text=True, timeout=30)


def tls_status(path: str) -> dict:
    """The TLS part of what `status --json` prints, asked on the control socket itself (no process per
    question: one test polls it)."""
    reply = request(path, {"command": "status"}, timeout=10)
    assert reply["ok"], reply
    return reply["status"]["master"]["tls"]


def resume(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None):
    """One request on a new connection offering `session`: whether it resumed, and the session (with the
    latest ticket the server sent) to offer next."""
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="localhost", session=session) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert read_to_end(sock).startswith(b"HTTP/1.1 200")  # TLS 1.3 tickets arrive with the answer
        return sock.session_reused, sock.session


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_ticket_resumes_after_one_key_rotation_and_not_after_two(serve, tls_files, version):
    """Workers read the keys the master rotates from shared memory: after one rotation the key before still
    opens tickets (on every worker) and the resumed session gets a ticket under the new key; after a second
    rotation the first key aged out."""
    path = control_path()
    server = tls_serve(serve, tls_files, "--control", path, workers=2)
    context = tls_client_context(tls_files)
    context.maximum_version = version
    reused, old = resume(server.port, context)
    assert not reused
    rotated = control(path, "rotate-ticket-keys")
    assert rotated.returncode == 0 and "generation 1" in rotated.stdout, rotated.stderr
    for _ in range(4):  # reuseport spreads new connections over both workers
        assert resume(server.port, context, old)[0]
    reused, renewed = resume(server.port, context, old)
    assert reused
    assert control(path, "rotate-ticket-keys").returncode == 0
    assert not resume(server.port, context, old)[0]
    assert resume(server.port, context, renewed)[0]
    assert tls_status(path)["ticket_key_generation"] == 2


def test_a_ticket_resumes_on_the_workers_of_a_reload(serve, tls_files, tmp_path):
    path = control_path()
    server = tls_serve(serve, tls_files, "--control", path)
    session = str(tmp_path / "session.pem")
    assert "New, " in s_client(server.port, "-sess_out", session)
    before = server.workers()
    assert control(path, "reload").returncode == 0
    assert not set(server.workers()) & set(before)
    assert "Reused, " in s_client(server.port, "-sess_in", session)


def test_ticket_keys_rotate_every_half_lifetime(serve, tls_files, tmp_path):
    path = control_path()
    server = tls_serve(serve, tls_files, "--control", path, "--ssl-ticket-key-lifetime", "0.4")
    session = str(tmp_path / "session.pem")
    assert "New, " in s_client(server.port, "-sess_out", session)
    sealed_by = tls_status(path)["ticket_key_generation"]  # the ticket's key is this one or older
    assert wait_until(lambda: tls_status(path)["ticket_key_generation"] >= sealed_by + 2, timeout=20)
    assert "New, " in s_client(server.port, "-sess_in", session)
    server.stop()
    assert "TLS session ticket keys rotated (its half-lifetime passed)" in server.read_output()


def test_rotating_ticket_keys_needs_https(serve):
    path = control_path()
    serve("--control", path)
    refused = control(path, "rotate-ticket-keys")
    assert refused.returncode == 1 and "serves no https" in refused.stderr


def test_kernel_tls_state_is_one_line_at_start_and_in_the_status(serve, tls_files):
    usable, why = kernel_tls()
    path = control_path()
    server = tls_serve(serve, tls_files, "--control", path)
    state = tls_status(path)["kernel_tls"]
    assert state.startswith("kernel TLS on" if usable else f"kernel TLS unavailable ({why})")
    server.stop()
    assert f"TLS: {state}" in server.read_output()
    switched_off = tls_serve(serve, tls_files, "--no-ssl-ktls", "--control", path)
    assert tls_status(path)["kernel_tls"].startswith("kernel TLS off (--no-ssl-ktls)")
    switched_off.stop()


# Opening a socket raises: the audit event comes before the kernel is asked for one.
NO_SOCKETS = """
import sys
def refuse(event, args):
    if event == "socket.__new__":
        raise RuntimeError("a socket was opened")
sys.addaudithook(refuse)
"""


def without_sockets(code: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_SOCKETS + code, *argv], capture_output=True, text=True,
                          timeout=30)


def test_config_show_with_tls_flags_does_not_probe_kernel_tls(tls_files):
    """The probe is a loopback connection given the tls upper-layer protocol: the server makes it as it
    starts (the test above sees its line), `config --show` starts nothing and must not."""
    probe = without_sockets("from fastcluster.tls import decide_kernel_tls; decide_kernel_tls(True)")
    if probe.returncode == 0:
        pytest.skip(f"the probe opens no socket here: {kernel_tls()[1]}")
    assert "a socket was opened" in probe.stderr
    shown = without_sockets("from fastcluster.cli import main; sys.exit(main(sys.argv[1:]))",
                            "config", "--show", "--ssl-certfile", tls_files["server.pem"],
                            "--ssl-keyfile", tls_files["server.key"])
    assert shown.returncode == 0, shown.stderr
    assert tls_files["server.pem"] in shown.stdout


def aes_gcm_context(tls_files, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client taking only AES-GCM, the records the kernel can encrypt (TLS 1.3 suites are all AEAD;
    OpenSSL's server prefers AES-256-GCM among them)."""
    context = tls_client_context(tls_files)
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    return context


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_files_over_aes_gcm_arrive_whole_with_or_without_kernel_tls(serve, tls_files, tmp_path, version):
    """AES-GCM is what the kernel can take over; where it cannot (no tls module), the worker encrypts."""
    data = os.urandom(3 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    server = tls_serve(serve, tls_files, "--static", str(tmp_path))
    with tls_connect(server.port, aes_gcm_context(tls_files, version)) as sock:
        assert "GCM" in sock.cipher()[0]
        for _ in range(2):
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body = read_responses(sock, 1, timeout=20)[0]
            assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


@pytest.mark.skipif(not kernel_tls()[0], reason=f"kernel TLS unavailable here: {kernel_tls()[1]}")
def test_kernel_tls_sends_files_by_sendfile(serve, tls_files, tmp_path):
    """Where the kernel takes AES-GCM records, a static file leaves by sendfile: the worker reads none of
    it (its read syscalls stay far below one per 16 KiB record)."""
    data = os.urandom(8 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    path = control_path()
    server = tls_serve(serve, tls_files, "--static", str(tmp_path), "--control", path)
    assert tls_status(path)["kernel_tls"].startswith("kernel TLS on")
    worker = server.workers()[0]
    reads_before = proc_io(worker)["syscr"]
    with tls_connect(server.port, aes_gcm_context(tls_files, ssl.TLSVersion.TLSv1_2)) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, body = read_responses(sock, 1, timeout=20)[0]
    assert status == 200 and body == data
    assert proc_io(worker)["syscr"] - reads_before < len(data) // 16384 // 2


def proc_io(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as handle:
        return {name: int(value) for name, value in (line.split(": ") for line in handle)}


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


def test_half_open_handshakes_do_not_block_other_clients(serve_shared, tls_files):
    server = tls_serve(serve_shared, tls_files)
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


def test_the_built_in_websocket_echo_runs_over_tls(serve_shared, tls_files):
    from websockets.asyncio.client import connect

    server = tls_serve(serve_shared, tls_files)

    async def talk() -> None:
        async with connect(f"wss://localhost:{server.port}/ws", ssl=tls_client_context(tls_files)) as ws:
            for message in ("hello", b"\x00" * 70_000):
                await ws.send(message)
                assert await ws.recv() == message

    asyncio.run(talk())


def test_decrypted_bytes_left_in_openssl_after_a_full_read_are_not_forgotten(serve, tls_files):
    """The request reaches the socket whole while the worker is stopped: a head record, then seven 10000-byte
    records of body. The first read fills the 64 KiB buffer partway through the seventh record, whose tail
    stays decrypted inside OpenSSL with nothing left in the socket for epoll to report."""
    import signal

    server = tls_serve(serve, tls_files)
    body = os.urandom(70000)
    with tls_connect(server.port, tls_client_context(tls_files)) as sock:
        sock.sendall(GET)
        read_responses(sock, 1)  # the handshake is done: what follows is only records
        worker = server.workers()[0]
        os.kill(worker, signal.SIGSTOP)
        try:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body))
            for start in range(0, len(body), 10000):
                sock.sendall(body[start:start + 10000])
        finally:
            os.kill(worker, signal.SIGCONT)
        status, _, echoed = read_responses(sock, 1, timeout=5)[0]
        assert status == 200 and echoed == body


def test_sessions_are_not_stored_per_worker(serve_shared, tls_files, tmp_path):
    """Resumption is by tickets, which every worker opens; a TLS 1.2 client asking for none offers a
    session id that no worker stored (as nginx by default), and gets a full handshake."""
    server = tls_serve(serve_shared, tls_files)
    session = str(tmp_path / "session.pem")
    assert "New, " in s_client(server.port, "-tls1_2", "-no_ticket", "-sess_out", session)
    again = s_client(server.port, "-tls1_2", "-no_ticket", "-sess_in", session)
    assert "New, " in again and "HTTP/1.1 200" in again, again
