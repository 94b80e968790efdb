"""The master: pinning, supervision, graceful and immediate stop, sockets, process titles, bad flags."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.app.client import APPS
from tests.conftest import free_port, http_exchange, read_responses, wait_until

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
ALLOWED = sorted(os.sched_getaffinity(0))


def cpus_allowed(pid: int) -> str:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Cpus_allowed_list:"):
                return line.split()[1]
    raise AssertionError("no Cpus_allowed_list")


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode().strip()


def test_each_worker_is_pinned_to_its_own_cpu(serve):
    server = serve(workers=len(ALLOWED))
    expected = sorted(str(cpu) for cpu in ALLOWED)
    # A worker pins itself right after fork: give it that moment.
    assert wait_until(lambda: sorted(cpus_allowed(pid) for pid in server.workers()) == expected, 2.0), (
        [cpus_allowed(pid) for pid in server.workers()])


def test_cpus_flag_and_no_pin(serve):
    last = ALLOWED[-1]
    server = serve("--cpus", str(last))
    [pid] = server.workers()
    assert cpus_allowed(pid) == str(last)
    assert cmdline(pid) == f"fastcluster: worker 0 [cpu {last}]"
    assert cmdline(server.pid).startswith("fastcluster: master [127.0.0.1:")
    loose = serve("--no-pin")
    [pid] = loose.workers()
    assert cpus_allowed(pid) == cpus_allowed(os.getpid())


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two allowed CPUs")
def test_two_single_worker_servers_are_not_both_pinned_to_the_first_cpu(serve):
    first, second = serve(), serve()
    for server in (first, second):
        [pid] = server.workers()
        assert cpus_allowed(pid) == cpus_allowed(server.pid), "pinned to one CPU while others idle"
        assert cmdline(pid) == "fastcluster: worker 0"
    first.stop()
    assert first.output.count("workers not pinned to CPUs: 1 worker for") == 1, first.output
    pinned = serve("--workers", "1", "--cpus", str(ALLOWED[1]))  # as benchmarks/servers.py starts it
    [pid] = pinned.workers()
    assert wait_until(lambda: cpus_allowed(pid) == str(ALLOWED[1]), 2.0)


def test_killed_worker_is_replaced_on_the_same_cpu_within_a_second(serve):
    server = serve(workers=len(ALLOWED))
    victim = server.workers()[0]
    cpu = cpus_allowed(victim)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    assert wait_until(lambda: len(server.workers()) == len(ALLOWED) and victim not in server.workers(), 1.0)
    assert time.monotonic() - killed < 1.0
    # The replacement pins itself right after fork: give it that moment.
    assert wait_until(lambda: [pid for pid in server.workers() if pid != victim and cpus_allowed(pid) == cpu],
                      2.0), [cpus_allowed(pid) for pid in server.workers()]
    with server.connect() as sock:
        sock.sendall(GET)
        assert read_responses(sock, 1)[0][0] == 200


def test_connections_queued_on_a_dead_workers_socket_are_served_by_its_successor(serve):
    server = serve()
    [worker] = server.workers()
    os.kill(worker, signal.SIGSTOP)
    waiting = [server.connect() for _ in range(5)]
    for sock in waiting:
        sock.sendall(GET)
    os.kill(worker, signal.SIGKILL)
    for sock in waiting:
        with sock:
            assert read_responses(sock, 1, timeout=5)[0][0] == 200


def test_sigterm_lets_an_in_flight_request_finish(serve):
    server = serve("--graceful-timeout", "10")
    with server.connect() as idle:
        idle.sendall(GET)
        read_responses(idle, 1)
        busy = start_slow_request(server)
        server.signal(signal.SIGTERM)
        idle.settimeout(5)
        assert idle.recv(10) == b"", "an idle keep-alive connection stays open while draining"
        time.sleep(0.3)
        answer = http_exchange(busy, b"world")
        busy.close()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in answer
    assert server.proc.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


@pytest.mark.parametrize("app", ["apps:slow", "apps:slow --loop asyncio", "wsgi_apps:sleepy",
                                 "wsgi_apps:sleepy --threads 2"])
def test_sigterm_lets_an_app_answer_in_flight_finish_and_close(serve, app):
    """An answer the app is making when the stop comes ends its connection, as the built-in responder's do:
    the client learns from it not to send another request on a connection about to close."""
    spec, *flags = app.split()
    server = serve(spec, "--app-dir", APPS, *flags)
    with server.connect() as sock:
        sock.sendall(b"GET /in-flight?0.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.2)  # the app is at work
        server.signal(signal.SIGTERM)
        [(status, headers, body)] = read_responses(sock, 1, timeout=5)
        assert sock.recv(10) == b"", "the connection closes after the answer"
    assert (status, body) == (200, b"/in-flight")
    assert headers.get("connection") == "close"
    assert server.proc.wait(10) == 0


def start_slow_request(server) -> socket.socket:
    """A request whose body is still arriving: keeps its worker busy through a graceful stop."""
    busy = server.connect()
    busy.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
    time.sleep(0.2)
    return busy


def test_second_signal_stops_at_once(serve):
    server = serve("--graceful-timeout", "60")
    with start_slow_request(server):
        server.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert server.proc.poll() is None, "stopped before the in-flight request finished"
        stopped = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.proc.wait(5) == 0
        assert time.monotonic() - stopped < 3


def test_sigquit_stops_at_once(serve):
    server = serve("--graceful-timeout", "60")
    with start_slow_request(server):
        server.signal(signal.SIGQUIT)
        assert server.proc.wait(5) == 0


#: An app whose worker sends itself TERM at gc.freeze(), its last step before its loop runs, as the master's
#: TERM does when the server is stopped while a worker starts (a reload's new one, a fresh start).
TERM_AS_THE_LOOP_STARTS = """
import gc
import os
import signal
import sys


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"up"]


def term_as_the_loop_starts(frame, event, called):
    if event == "c_call" and called is gc.freeze:
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGTERM)


sys.setprofile(term_as_the_loop_starts)
"""


def test_a_term_reaching_a_worker_as_its_app_loop_starts_stops_it(serve, tmp_path):
    (tmp_path / "stops_itself.py").write_text(TERM_AS_THE_LOOP_STARTS)
    server = serve("stops_itself:app", "--app-dir", str(tmp_path), ready=False)
    started = wait_until(server.workers, 5)
    assert started, server.read_output()
    assert wait_until(lambda: started[0] not in server.workers(), 5), "the worker lost its TERM and serves on"
    server.stop()
    assert "exited with status 0; restarting it" in server.output, server.output


def test_shared_balance_and_ipv6(serve):
    server = serve("--balance", "shared", workers=2)
    for _ in range(20):
        with server.connect() as sock:
            assert http_exchange(sock, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").endswith(
                b"Hello, World!")
    if not socket.has_ipv6:
        return
    port = free_port()
    try:
        serve("--bind", f"[::1]:{port}", port=None)
    except AssertionError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with socket.create_connection(("::1", port), timeout=5) as sock:
        sock.sendall(GET)
        assert read_responses(sock, 1)[0][0] == 200


def run_cli(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args", [
    ["serve", "--workers", "0"],
    ["serve", "--workers", "many"],
    ["serve", "--port", "99999"],
    ["serve", "--cpus", "100-101"],
    ["serve", "--cpus", "1-0"],
    ["serve", "--bind", "nowhere"],
    ["serve", "--no-such-flag"],
    ["serve", "--header-timeout", "-1"],
    ["serve", "--drain-delay", "-1"],
    ["serve", "--response-status", "42"],
    ["serve", "--response-header", "Bad Name: x"],
    ["serve", "--response-file", "/does/not/exist"],
    ["serve", "--response-body", "a", "--response-size", "5"],
    ["serve", "--max-body", "lots"],
    ["serve", "--balance", "random"],
    ["frobnicate"],
    [],
])
def test_bad_flags_give_one_line_and_status_2(args):
    result = run_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcluster: error: "), result.stderr


def test_busy_port_gives_one_line_and_status_2():
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even a reuseport listener is noticed
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Address already in use" in lines[0], result.stderr


def test_workers_leave_when_the_master_is_killed(serve):
    server = serve(workers=2)
    workers = server.workers()
    server.expected_exit = None
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(5)

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read()
                       for pid in workers)
    try:
        assert wait_until(gone, 5), "workers kept running without their master"
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
