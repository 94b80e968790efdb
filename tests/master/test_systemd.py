"""systemd: the notify protocol (READY, RELOADING with MONOTONIC_USEC, STATUS, WATCHDOG, STOPPING) seen by a
datagram socket of our own standing in for $NOTIFY_SOCKET, with the server started, reloaded and stopped by
the very commands of deploy/fastcluster.service, on the socket deploy/fastcluster.socket describes."""

from __future__ import annotations

import configparser
import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fastcluster.cli import parser
from tests.conftest import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None, strict=False)
    config.optionxform = str
    config.read(DEPLOY / name)
    return config


class NotifySocket:
    """What systemd listens on: one datagram per message, kept in arrival order."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(15)
        self.messages: list[dict[str, str]] = []

    def wait_for(self, field: str, value: str = "1") -> dict[str, str]:
        """The next message (from now on) that has field=value."""
        while True:
            data = self.sock.recv(4096).decode()
            message = dict(line.split("=", 1) for line in data.split("\n"))
            self.messages.append(message)
            if message.get(field) == value:
                return message


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.fixture
def workdir():
    directory = tempfile.mkdtemp(prefix="fc-sd-", dir="/tmp")  # Unix socket paths must stay short
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def command(line: str, replace: dict[str, str]) -> list[str]:
    """A unit's command line, run here: our interpreter for the installed script, test paths for its own."""
    words = shlex.split(line)
    assert words[0].endswith("/fastcluster")
    return [sys.executable, "-m", "fastcluster", *(replace.get(word, word) for word in words[1:])]


@pytest.mark.parametrize("abstract", [False, True])
def test_the_unit_files_commands_speak_the_notify_protocol(workdir, abstract):
    service, socket_unit = unit("fastcluster.service")["Service"], unit("fastcluster.socket")["Socket"]
    assert service["Type"] == "notify" and service["KillMode"] == "mixed"
    start, reload = service["ExecStart"], service["ExecReload"]
    config_path, control = shlex.split(start)[shlex.split(start).index("--config") + 1], \
        shlex.split(start)[shlex.split(start).index("--control") + 1]
    assert shlex.split(reload)[1:] == ["reload", "--control", control]  # the same server's control socket
    graceful = parser()._subparsers._group_actions[0].choices["serve"].get_default("graceful_timeout")
    assert float(service["TimeoutStopSec"]) > graceful + 1  # systemd waits for a graceful stop

    port = free_port()
    host = socket_unit["ListenStream"].rpartition(":")[0]
    listener = socket.create_server((host, port), backlog=int(socket_unit["Backlog"]))
    test_config = Path(workdir, "fastcluster.toml")
    test_config.write_text("workers = 2\n")
    replace = {config_path: str(test_config), control: f"{workdir}/control.sock"}
    address = f"@fastcluster-test-{os.getpid()}-{port}" if abstract else f"{workdir}/notify"
    notify = NotifySocket(address)
    # What systemd does for a socket-activated service: the socket as fd 3, LISTEN_PID, LISTEN_FDS.
    activate = ("import os, sys\n"
                "os.dup2(int(sys.argv[1]), 3)\n"
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
                "os.execv(sys.executable, sys.argv[2:])\n")
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    activated = [sys.executable, "-c", activate, str(listener.fileno()), *command(start, replace)]
    proc = subprocess.Popen(activated, pass_fds=[listener.fileno()], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    listener.close()
    try:
        ready = notify.wait_for("READY")
        assert ready["STATUS"].startswith("2 of 2 workers serving")
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        client.request("GET", "/")
        assert client.getresponse().status == 200
        client.close()
        notify.wait_for("WATCHDOG")

        before = monotonic_usec()
        done = subprocess.run(command(reload, replace), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        reloading = notify.wait_for("RELOADING")
        assert before <= int(reloading["MONOTONIC_USEC"]) <= monotonic_usec()
        assert notify.wait_for("READY")["STATUS"].startswith("2 of 2 workers serving")

        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: to the master only
        notify.wait_for("STOPPING")
        assert proc.wait(15) == 0
        assert all(len(message) <= 3 for message in notify.messages)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        output = proc.stdout.read()
        proc.stdout.close()
        notify.sock.close()
    assert "Traceback" not in output, output


def test_without_notify_socket_nothing_is_sent_and_the_variables_do_not_reach_the_app(serve, tmp_path):
    (tmp_path / "envapp.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.environ.get('NOTIFY_SOCKET', 'unset').encode()]\n")
    notify = NotifySocket(str(tmp_path / "notify"))
    server = serve("--app-dir", str(tmp_path), "envapp:app", env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    client.request("GET", "/")
    assert client.getresponse().read() == b"unset"
    client.close()
    assert notify.wait_for("READY")
    notify.sock.close()
