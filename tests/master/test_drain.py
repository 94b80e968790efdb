"""A graceful stop behind a load balancer: /healthz turns 503 first, --drain-delay keeps serving, then the
listeners close."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from tests.conftest import free_port, get, read_responses, wait_until

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def control_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", *args], capture_output=True, text=True,
                          timeout=10)


def test_healthz_turns_503_while_requests_are_served_until_the_drain_delay_ends(serve, control):
    admin, delay = free_port(), 2.5
    server = serve("--drain-delay", str(delay), "--admin-port", str(admin), "--control", control, workers=2)
    with server.connect() as kept:
        kept.sendall(GET)
        read_responses(kept, 1)
        assert get(admin, "/healthz") == (200, b"ok\n")
        asked = time.monotonic()
        server.signal(signal.SIGTERM)
        assert wait_until(lambda: get(admin, "/healthz")[0] == 503, 5)
        assert get(admin, "/healthz") == (503, b"draining\n")
        # Still serving normally: new connections and kept-alive ones, without Connection: close.
        for _ in range(5):
            assert get(server.port, "/") == (200, b"Hello, World!")
        kept.sendall(GET)
        status, headers, _ = read_responses(kept, 1)[0]
        assert status == 200 and headers.get("connection") != "close"
        assert "the server is stopping" in control_cli("reload", "--control", control).stderr
        assert wait_until(lambda: refused(server.port), delay + 10)
        assert time.monotonic() - asked >= delay
    assert server.proc.wait(10) == 0
    assert "--drain-delay" in server.read_output()


def test_without_a_drain_delay_the_listeners_close_at_once(serve):
    admin = free_port()
    server = serve("--admin-port", str(admin), "--graceful-timeout", "30")
    with server.connect() as busy:  # a request in flight keeps the server (and /healthz) up while it drains
        busy.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        assert wait_until(lambda: refused(server.port), 5)
        assert get(admin, "/healthz") == (503, b"draining\n")
        busy.sendall(b"world")
        assert read_responses(busy, 1)[0][0] == 200
    assert server.proc.wait(10) == 0


def test_a_second_signal_during_the_drain_delay_stops_at_once(serve):
    admin = free_port()
    server = serve("--admin-port", str(admin), env={"FASTCLUSTER_DRAIN_DELAY": "60"})
    server.signal(signal.SIGTERM)
    assert wait_until(lambda: get(admin, "/healthz")[0] == 503, 5)
    assert get(server.port, "/")[0] == 200
    server.signal(signal.SIGINT)
    assert server.proc.wait(10) == 0


def test_the_control_stop_waits_the_drain_delay_from_the_config_file(serve, control, tmp_path):
    admin = free_port()
    config = tmp_path / "fc.toml"
    config.write_text("drain-delay = 60\n")
    server = serve("--config", str(config), "--admin-port", str(admin), "--control", control)
    assert control_cli("stop", "--control", control).returncode == 0
    assert wait_until(lambda: get(admin, "/healthz")[0] == 503, 5)
    assert get(server.port, "/")[0] == 200
    assert server.proc.poll() is None
    server.signal(signal.SIGQUIT)
    assert server.proc.wait(10) == 0
