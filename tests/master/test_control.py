"""Where control sockets live by default: root's in /run/fastcluster, anyone else's in a private directory
checked before use; one per listening address (same port on two hosts, socket activation), found by
`status --port [--host]`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import free_port, wait_until
from tests.test_settings import cli

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the root defaults and user switching need root")


@ROOT_ONLY
def test_two_servers_on_one_port_get_their_own_control_sockets(serve):
    port = free_port()
    serve(port=port)
    other = serve("--bind", f"127.0.0.2:{port}", port=None)
    assert wait_until(lambda: len(other.workers()) == 1)
    for host in ("127.0.0.1", "127.0.0.2"):
        path = f"/run/fastcluster/fastcluster-{host}-{port}.sock"
        assert wait_until(lambda path=path: os.path.exists(path))
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
        result = cli("status", "--json", "--port", str(port), "--host", host)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["master"]["addresses"] == [f"{host}:{port}"]
    info = os.stat("/run/fastcluster")
    assert (info.st_uid, stat.S_IMODE(info.st_mode) & 0o022) == (0, 0)
    result = cli("status", "--port", str(port))
    assert result.returncode == 1
    assert f"several servers listen on port {port} (hosts 127.0.0.1, 127.0.0.2): choose with --host" \
        in result.stderr


@ROOT_ONLY
def test_a_socket_activated_server_is_named_after_its_socket_and_stopped_by_port():
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    script = ("import os, sys\n"
              "os.dup2(int(sys.argv[1]), 3)\n"
              "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
              "os.execv(sys.executable, [sys.executable, '-m', 'fastcluster', 'serve', '--workers', '1'])\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(listener.fileno())],
                            pass_fds=[listener.fileno()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    listener.close()
    try:
        path = f"/run/fastcluster/fastcluster-127.0.0.1-{port}.sock"
        assert wait_until(lambda: os.path.exists(path), timeout=10), proc.stdout
        assert wait_until(lambda: cli("status", "--port", str(port)).returncode == 0)
        assert cli("stop", "--port", str(port)).returncode == 0
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def as_nobody(*args: str, runtime_dir: str) -> subprocess.CompletedProcess:
    """The control client run by an unprivileged user (modules imported while still root: the interpreter
    may live under /root)."""
    script = ("import os, sys, fastcluster.cli as cli, fastcluster.master\n"
              "cli.parser()\n"
              "os.setgid(65534); os.setuid(65534)\n"
              f"sys.exit(cli.main({list(args)!r}))\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd="/tmp", env={**os.environ, "XDG_RUNTIME_DIR": runtime_dir})


@pytest.fixture
def runtime_dir():
    """An $XDG_RUNTIME_DIR the unprivileged user can reach."""
    directory = tempfile.mkdtemp(prefix="fc-xdg-", dir="/tmp")
    os.chmod(directory, 0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@ROOT_ONLY
def test_a_users_control_directory_is_made_private(runtime_dir):
    result = as_nobody("status", "--port", "9", runtime_dir=runtime_dir)
    assert result.returncode == 1
    assert f"no server on port 9: no control socket in {runtime_dir}/fastcluster" in result.stderr
    info = os.stat(f"{runtime_dir}/fastcluster")
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (65534, 0o700)


@ROOT_ONLY
@pytest.mark.parametrize(("owner", "mode"), [(0, 0o700), (65534, 0o755), (65534, 0o703)])
def test_a_control_directory_others_can_use_is_refused(runtime_dir, owner, mode):
    directory = f"{runtime_dir}/fastcluster"
    os.mkdir(directory)
    os.chown(directory, owner, owner)
    os.chmod(directory, mode)
    result = as_nobody("stop", "--port", "9", runtime_dir=runtime_dir)
    assert result.returncode == 1
    assert result.stderr.startswith(f"fastcluster: error: control directory {directory} is not private")
    assert result.stderr.count("\n") == 1


@ROOT_ONLY
def test_a_socket_left_by_a_killed_server_does_not_hide_the_live_one(serve):
    port = free_port()
    serve(port=port)
    stale = f"/run/fastcluster/fastcluster-127.0.0.3-{port}.sock"
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(stale)  # what a SIGKILLed master leaves
    try:
        result = cli("status", "--json", "--port", str(port))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["master"]["addresses"] == [f"127.0.0.1:{port}"]
    finally:
        os.unlink(stale)
