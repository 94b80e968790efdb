"""gunicorn's and uvicorn's flags: the aliases serve as our flags do, the others stop with one line naming
our spelling or why there is none; --chdir, --umask, --user and --group do what they do in gunicorn."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from tests.conftest import free_port, get, wait_until
from tests.test_settings import cli, shown


def test_w_and_b_serve_like_workers_and_bind(serve):
    port = free_port()
    server = serve("-w", "2", "-b", f"127.0.0.1:{port}", port=None, ready=False)
    server.port = port
    server.wait_ready(workers=2)
    assert get(port) == (200, b"Hello, World!")
    assert len(server.workers()) == 2


def test_uds_serves_on_a_unix_socket(serve, tmp_path):
    path = str(tmp_path / "app.sock")
    server = serve("--uds", path, port=None)
    assert wait_until(lambda: os.path.exists(path))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        assert wait_until(lambda: sock.connect_ex(path) == 0)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert server.proc.poll() is None


def test_aliases_set_our_settings():
    settings = shown(cli("config", "--show", "--fd", "5", "--uds", "/run/x.sock", "--timeout-keep-alive", "7",
                         "--access-logfile", "-", "--pid", "/run/fc.pid", "-t", "40", "-p", "/run/other.pid"))
    assert settings["bind"] == ('["fd://5", "unix:/run/x.sock"]', "command line")
    assert settings["keepalive-timeout"] == ("7.0", "command line")
    assert settings["access-log"] == ('"-"', "command line")
    assert settings["pidfile"] == ('"/run/other.pid"', "command line")  # the last one given
    assert settings["timeout"] == ("40.0", "command line")


def test_an_alias_checks_its_value_as_our_flag_does():
    result = cli("serve", "--timeout-keep-alive", "-3")
    assert result.returncode == 2
    assert "expected a positive number of seconds" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["-k", "uvicorn.workers.UvicornWorker"], "-k: not supported: ASGI and WSGI apps run natively"),
    (["--worker-class", "gevent"], "--worker-class: not supported"),
    (["--reload-delay", "1"], "--reload-delay: not supported: --reload reloads once a batch"),
    (["--cert-reqs", "2"], "--cert-reqs: fastcluster's spelling is --ssl-cert-reqs"),
    (["--ssl-version", "5"], "--ssl-version: fastcluster's spelling is --ssl-min-version"),
    (["--http", "h11"], "--http: not supported"),
    (["--ws", "websockets"], "--ws: not supported"),
    (["--daemon"], "--daemon: not supported: run it under systemd"),
    (["--statsd-host", "localhost:8125"], "--statsd-host: not supported: scrape /metrics"),
    (["--worker-connections", "1000"], "--worker-connections: not supported"),
    (["--limit-request-line", "4094"], "--limit-request-line: fastcluster's spelling is --max-request-line"),
    (["--keep-alive", "2"], "--keep-alive: fastcluster's spelling is --keepalive-timeout"),
    (["--timeout-graceful-shutdown", "5"], "fastcluster's spelling is --graceful-timeout"),
    (["-c", "gunicorn.conf.py"], "-c: fastcluster's spelling is --config (a TOML file)"),
])
def test_other_gunicorn_and_uvicorn_flags_get_one_line_and_status_2(args, message):
    result = cli("serve", *args)
    assert result.returncode == 2, result
    assert result.stderr == f"fastcluster: error: {result.stderr.split('error: ', 1)[1]}"
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_chdir_comes_before_the_app_and_relative_paths(serve, tmp_path):
    (tmp_path / "here.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.getcwd().encode()]\n")
    server = serve("--chdir", str(tmp_path), "here:app")
    assert get(server.port) == (200, str(tmp_path).encode())


def test_chdir_to_a_missing_directory_is_one_line():
    result = cli("serve", "--chdir", "/nonexistent")
    assert result.returncode == 2
    assert result.stderr == "fastcluster: error: --chdir: cannot change to /nonexistent: " \
                            "No such file or directory\n"


def test_umask_applies_to_the_files_the_server_creates(serve, tmp_path):
    pidfile = tmp_path / "fc.pid"
    serve("--umask", "077", "--pid", str(pidfile))
    assert stat.S_IMODE(os.stat(pidfile).st_mode) == 0o600


@pytest.mark.parametrize("text", ["999", "0o1000", "rw"])
def test_a_bad_umask_is_one_line(text):
    result = cli("serve", "--umask", text)
    assert result.returncode == 2 and "--umask: expected an octal mode" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_and_group_drop_root_in_the_workers_only(serve):
    def ids(pid: int) -> tuple[str, str]:
        with open(f"/proc/{pid}/status") as handle:
            fields = {line.split(":")[0]: line.split()[1:] for line in handle}
        return fields["Uid"][0], fields["Gid"][0]

    server = serve("--user", "nobody", "--group", "nogroup", workers=2)
    assert get(server.port)[0] == 200
    # A worker switches while it boots: wait until both have.
    assert wait_until(lambda: [ids(pid) for pid in server.workers()] == [("65534", "65534")] * 2)
    assert ids(server.pid) == ("0", "0")


@pytest.mark.parametrize(("args", "message"), [
    (["--user", "no-such-user-here"], "--user: no such user 'no-such-user-here'"),
    (["--group", "no-such-group-here"], "--group: no such group 'no-such-group-here'"),
])
def test_unknown_user_or_group_is_one_line(args, message):
    if os.geteuid() != 0:
        pytest.skip("names are checked after the root check")
    result = cli("serve", *args)
    assert result.returncode == 2 and message in result.stderr


def test_user_needs_root():
    # Run as nobody: the modules are imported while still root (the interpreter may sit under /root).
    script = ("import os, sys, fastcluster.cli as cli, fastcluster.master\n"
              "cli.parser()\n"
              "if os.geteuid() == 0:\n"
              "    os.setgid(65534); os.setuid(65534)\n"
              "sys.exit(cli.main(['serve', '--user', 'nobody']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                            cwd="/tmp")
    assert result.returncode == 2
    assert result.stderr == "fastcluster: error: --user: only root can switch the workers' user or group\n"


def test_a_habit_flag_that_becomes_ours_is_left_to_it():
    from fastcluster.cli import parser
    from fastcluster.habits import add_habits

    serve = parser()._subparsers._group_actions[0].choices["serve"]
    add_habits(serve)  # every flag of the table exists now, as a real flag would after a merge
    assert serve.parse_args(["-w", "3"]).workers == "3"
