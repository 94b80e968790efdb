"""Where ASGI apps run: every request of a keep-alive connection in a fresh context with a real current
task, work after a response not holding up the next request, timeouts and cancellation request after
request on one connection, and pipelined requests answered in order (asgi_apps.tasks)."""

import time

from tests.app.client import APPS
from tests.conftest import read_responses


def ask(sock, target: str) -> bytes:
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode())
    [(status, _, body)] = read_responses(sock, 1)
    assert status == 200
    return body


def test_each_request_has_a_fresh_context(serve_shared):
    server = serve_shared("--app-dir", APPS, "asgi_apps:tasks")
    with server.connect() as sock:
        for request_id in ("a", "b", "c"):
            assert ask(sock, f"/context?{request_id}") == b"unset %s" % request_id.encode()


def test_apps_have_a_current_task_before_and_after_waiting(serve_shared):
    server = serve_shared("--app-dir", APPS, "asgi_apps:tasks")
    with server.connect() as sock:
        for _ in range(3):
            assert ask(sock, "/current") == b"True True True"


def test_work_after_a_response_does_not_hold_up_the_next_request(serve):
    server = serve("--app-dir", APPS, "asgi_apps:tasks")
    with server.connect() as sock:
        assert ask(sock, "/after?1") == b"early"
        began = time.monotonic()
        assert ask(sock, "/after?2") == b"early"
        assert ask(sock, "/context?x") == b"unset x"
        assert time.monotonic() - began < 0.25  # neither waited for the 0.3 s of work before it
        time.sleep(0.5)
        assert ask(sock, "/count") == b"2"  # both apps finished their work


def test_timeouts_and_cancellation_request_after_request(serve_shared):
    server = serve_shared("--app-dir", APPS, "asgi_apps:tasks")
    with server.connect() as sock:
        for _ in range(3):
            assert ask(sock, "/timeout") == b"timed out"
            assert ask(sock, "/cancelled") == b"cancelled"
            assert ask(sock, "/context?y") == b"unset y"


def test_a_cancellation_after_its_request_ended_harms_no_later_request(serve_shared):
    server = serve_shared("--app-dir", APPS, "asgi_apps:tasks")
    with server.connect() as sock:
        assert ask(sock, "/cancel-later") == b"scheduled"
        time.sleep(0.15)  # the cancellation reaches the connection's task while it waits for a request
        assert ask(sock, "/context?z") == b"unset z"
        assert ask(sock, "/cancelled") == b"cancelled"
        assert ask(sock, "/current") == b"True True True"


def test_pipelined_requests_answered_in_order(serve_shared):
    server = serve_shared("--app-dir", APPS, "asgi_apps:tasks")
    targets = ["/context?1", "/current", "/after?p", "/timeout", "/context?2"] * 3
    with server.connect() as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % t.encode() for t in targets))
        bodies = [body for _, _, body in read_responses(sock, len(targets))]
    assert bodies == [b"unset 1", b"True True True", b"early", b"timed out", b"unset 2"] * 3
