"""Test harness: start real `fastcluster serve` processes on free loopback ports and talk to them."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []



def ctrl_c_works() -> None:
    """A Popen preexec_fn: SIGINT reaches the child as a terminal's Ctrl-C would, even when the tests run
    where it is ignored (a background job inherits SIGINT ignored, and so would every command it starts)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Server:
    """A `fastcluster serve` master process started for one test."""

    def __init__(self, args: list[str], port: int | None, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        """prefix: a command that runs the server, e.g. ip netns exec NAME (it must exec, keeping the pid)."""
        self.port = port
        self.args = args
        self.expected_exit: int | None = 0  # what teardown asserts; None: the test checked it already
        self.tracebacks_expected = False  # apps that raise on purpose get their traceback logged
        command = [*prefix, sys.executable, "-m", "fastcluster", "serve", *args]
        if port is not None and not any(a.startswith(("--bind", "--port")) for a in args):
            command += ["--port", str(port)]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, text=True)
        self.output = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        return children_of(self.proc.pid)

    def wait_ready(self, workers: int = 1, timeout: float = 10.0) -> Server:
        """Wait until `workers` workers run and the port answers."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.read_output()}")
            if len(self.workers()) < workers:
                return False
            if self.port is None:
                return True
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    return sock.recv(100).startswith(b"HTTP/1.1")
            except OSError:
                return False
        assert wait_until(ready, timeout), f"server not ready:\n{self.read_output()}"
        return self

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.read_output()
        return self.proc.returncode

    def read_output(self) -> str:
        if self.proc.poll() is not None and self.proc.stdout and not self.proc.stdout.closed:
            self.output += self.proc.stdout.read()
            self.proc.stdout.close()
        return self.output


def with_workers(args: Sequence[str], workers: int) -> list[str]:
    return [*args] if any(a.startswith("--workers") for a in args) else ["--workers", str(workers), *args]


def stop_and_check(server: Server) -> None:
    """Stop a server the harness started: it must exit 0 (a worker whose connection or buffer counters are
    not back to zero exits non-zero, which the master logs) and log no traceback, unless the test said
    otherwise."""
    code = server.stop()
    output = server.read_output()
    assert "still counted" not in output, output
    assert server.tracebacks_expected or "Traceback" not in output, output
    if server.expected_exit is not None:
        assert code == server.expected_exit, output


@pytest.fixture
def serve() -> Iterator:
    """serve(*args, workers=1) starts a server on a free port and waits for it; all are stopped and checked
    at teardown."""
    started: list[Server] = []

    def start(*args: str, workers: int = 1, port: int | None = -1, ready: bool = True,
              env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> Server:
        chosen = free_port() if port == -1 else port
        server = Server(with_workers(args, workers), chosen, env, prefix)
        started.append(server)
        return server.wait_ready(workers) if ready else server

    yield start
    for server in started:
        stop_and_check(server)


@pytest.fixture(scope="module")
def serve_shared() -> Iterator:
    """serve_shared(*args, workers=1, env=None): as serve, but one server per set of arguments and
    environment for the whole module, for tests that only send it requests (no signals, no stop, nothing read
    from its output); stopped and checked at the module's end."""
    started: dict[tuple, Server] = {}

    def start(*args: str, workers: int = 1, env: dict[str, str] | None = None) -> Server:
        key = (args, workers, tuple(sorted((env or {}).items())))
        if key not in started:
            started[key] = Server(with_workers(args, workers), free_port(), env)
            started[key].wait_ready(workers)
        return started[key]

    yield start
    for server in started.values():
        stop_and_check(server)


@pytest.fixture
def control() -> Iterator[str]:
    """A short control socket path (Unix socket paths are limited to 107 bytes)."""
    directory = tempfile.mkdtemp(prefix="fc-", dir="/tmp")
    yield os.path.join(directory, "control.sock")
    shutil.rmtree(directory, ignore_errors=True)


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    """GET path with http.client: (status, body)."""
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        client.request("GET", path)
        response = client.getresponse()
        return response.status, response.read()
    finally:
        client.close()


def check_refused(answer: bytes, status: int) -> None:
    """answer is the one error answer to a bad request, and it closes the connection."""
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert answer.count(b"HTTP/1.1 ") == 1, "a request after the bad one was answered"


def http_exchange(sock: socket.socket, data: bytes, timeout: float = 5.0) -> bytes:
    """Send data and read until the server closes the connection."""
    sock.settimeout(timeout)
    if data:
        sock.sendall(data)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_responses(sock: socket.socket, count: int, timeout: float = 5.0,
                   initial: bytes = b"") -> list[tuple[int, dict, bytes]]:
    """Read `count` Content-Length-framed responses (after `initial`, bytes already read from sock):
    (status, lower-cased headers, body) each."""
    sock.settimeout(timeout)
    buffer = bytearray(initial)  # grown in place: bytes would be copied whole for every piece of a large body
    responses = []
    while len(responses) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(responses)} responses: {bytes(buffer)!r}")
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside a body")
            buffer += chunk
        responses.append((status, headers, bytes(buffer[:length])))
        del buffer[:length]
    return responses


def openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, str]:
    """A throw-away CA and what it signed (P-256 keys): `server` for localhost and 127.0.0.1, `other` for
    other.test (SNI), `client` (mutual TLS), and `server_encrypted.key` (password "secret"). Paths by name."""
    where = str(tmp_path_factory.mktemp("tls"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=fastcluster test CA",
            "-days", "2", cwd=where)
    for name, subject, extension in (
            ("server", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            ("other", "/CN=other.test", "subjectAltName=DNS:other.test"),
            ("client", "/CN=test client/O=fastcluster", "extendedKeyUsage=clientAuth")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=where)
        with open(os.path.join(where, f"{name}.ext"), "w") as handle:
            handle.write(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=where)
    openssl("pkey", "-in", "server.key", "-out", "server_encrypted.key", "-aes256", "-passout", "pass:secret",
            cwd=where)
    names = ["ca.pem", "server.pem", "server.key", "other.pem", "other.key", "client.pem", "client.key",
             "server_encrypted.key"]
    return {name: os.path.join(where, name) for name in names}


def tls_client_context(tls_files: dict[str, str], client_cert: bool = False):
    """An ssl client context trusting the test CA (with the test client certificate when asked)."""
    import ssl

    context = ssl.create_default_context(cafile=tls_files["ca.pem"])
    if client_cert:
        context.load_cert_chain(tls_files["client.pem"], tls_files["client.key"])
    return context
