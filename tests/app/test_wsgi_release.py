"""What a WSGI request holds is let go of where and when it should be, over real sockets: with --threads a
streamed result is iterated and closed on the pool thread that ran the app (where its thread-locals and
context variables are), also when the client leaves or the worker stops; a spooled body is closed when its
request is done."""

from __future__ import annotations

import os

from tests.app.client import APPS, fetch
from tests.conftest import wait_until


def start_stream(server, marker) -> object:
    """Ask for a never-ending ThreadBound response recording into marker; read some of it."""
    sock = server.connect()
    sock.sendall(b"GET /?%s HTTP/1.1\r\nHost: t\r\n\r\n" % str(marker).encode())
    received = 0
    while received < 200_000:
        data = sock.recv(65536)
        assert data
        received += len(data)
    return sock


def closed_where_iterated(marker) -> bool:
    lines = marker.read_text().splitlines() if marker.exists() else []
    closes = [line.split() for line in lines if line.startswith("close")]
    if not closes:
        return False
    [(_, thread, sees_context)] = closes
    pieces = {line.split()[1] for line in lines if line.startswith("piece")}
    assert pieces == {thread}, f"iterated on {pieces}, closed on {thread}"
    assert sees_context == "True", "close() did not see the request's context"
    return True


def test_close_runs_on_the_pool_thread_when_the_client_leaves(serve, tmp_path):
    server = serve("wsgi_apps:thread_bound", "--app-dir", APPS, "--threads", "2")
    marker = tmp_path / "record"
    start_stream(server, marker).close()
    assert wait_until(lambda: closed_where_iterated(marker))
    assert fetch(server, "/")[1] == b"ready"


def test_close_runs_on_the_pool_thread_when_the_worker_stops(serve, tmp_path):
    server = serve("wsgi_apps:thread_bound", "--app-dir", APPS, "--threads", "2", "--graceful-timeout", "0.5")
    marker = tmp_path / "record"
    sock = start_stream(server, marker)  # left unread while the worker stops
    assert server.stop() == 0
    sock.close()
    assert "did not stop in time" not in server.read_output()
    assert closed_where_iterated(marker)


def test_spooled_body_is_closed_when_its_request_is_done(serve):
    # An unclosed file warns when it is collected: every such warning is shown, and none may be.
    server = serve("wsgi_apps:digest_input", "--app-dir", APPS,
                   env={"PYTHONWARNINGS": "always::ResourceWarning"})
    payload = os.urandom(3 << 20)  # past 1 MiB: spooled to a temporary file
    for _ in range(2):
        response, body = fetch(server, "/echo", "POST", payload)
        assert response.status == 200 and body == payload
    server.stop()
    assert "ResourceWarning: unclosed file" not in server.read_output()
