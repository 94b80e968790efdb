"""Unix socket binds: their mode, a stale file replaced, a live socket or another file refused, and the file
removed when the server stops."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from tests.test_settings import cli


def unix_get(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return sock.recv(100)


def serve_unix(serve, path: str, *args: str):
    server = serve("--bind", f"unix:{path}", *args, port=None)
    server.wait_ready()
    return server


@pytest.mark.parametrize(("args", "mode"), [((), 0o666), (("--uds-mode", "0660"), 0o660)])
def test_a_unix_socket_gets_its_mode_whatever_the_umask(serve, tmp_path, args, mode):
    path = str(tmp_path / "app.sock")
    serve_unix(serve, path, "--umask", "077", *args)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert unix_get(path).startswith(b"HTTP/1.1 200")


def test_a_stale_socket_file_is_replaced_and_the_file_removed_at_stop(serve, tmp_path):
    path = str(tmp_path / "app.sock")
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(path)  # bound, never listening: what a killed server leaves
    server = serve_unix(serve, path)
    assert unix_get(path).startswith(b"HTTP/1.1 200")
    assert server.stop() == 0
    assert not os.path.exists(path)


def test_a_live_socket_or_another_file_is_refused(tmp_path):
    live = str(tmp_path / "live.sock")
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(live)
        listener.listen()
        result = cli("serve", "--bind", f"unix:{live}")
        assert result.returncode == 2
        assert result.stderr == f"fastcluster: error: cannot bind unix:{live}: another process listens on " \
                                f"{live}\n"
        assert os.path.exists(live)
    result = cli("serve", "--uds", str(other))
    assert result.returncode == 2
    assert f"{other} exists and is not a socket" in result.stderr
    assert other.read_text() == "keep me"
