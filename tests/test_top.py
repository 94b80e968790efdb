"""`fastcluster top` and `status --watch` run on a pseudo-terminal against a real server: the worker rows
appear and are redrawn; top shows CPU and latency percentiles of the requests made between refreshes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading

import pytest

from tests.app.client import fetch
from tests.conftest import ctrl_c_works, wait_until


class Terminal:
    """A fastcluster command on a pseudo-terminal (120 columns), its screen output collected."""

    def __init__(self, *args: str) -> None:
        self.master_fd, slave = os.openpty()
        os.set_blocking(self.master_fd, False)
        env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
        self.proc = subprocess.Popen([sys.executable, "-m", "fastcluster", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, start_new_session=True, preexec_fn=ctrl_c_works)
        os.close(slave)
        self.output = ""

    def read(self) -> str:
        while select.select([self.master_fd], [], [], 0.05)[0]:
            try:
                data = os.read(self.master_fd, 65536)
            except OSError:  # the command exited: the terminal is gone
                break
            if not data:
                break
            self.output += data.decode(errors="replace")
        return self.output

    def wait_for(self, predicate, timeout: float = 10) -> bool:
        return wait_until(lambda: predicate(self.read()), timeout)

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(5)
        self.read()
        os.close(self.master_fd)
        return code


def load(server, stop: threading.Event) -> None:
    while not stop.is_set():
        fetch(server, "/")


@pytest.mark.parametrize("plain", [True, False])
def test_top_shows_each_worker_with_cpu_and_latency(serve, control, plain):
    server = serve("--control", control, workers=2)
    pids = server.workers()
    # Started before any thread; a refresh every 0.3 s, not every second, shows the second one sooner.
    terminal = Terminal("top", "--control", control, "--interval", "0.3", *(["--plain"] if plain else []))
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(server, stop))
    loader.start()
    try:
        # Rows from the second refresh on have a CPU % and, with requests in between, a p50 bucket.
        shown = terminal.wait_for(lambda out: "≤" in out and all(str(pid) in out for pid in pids))
        assert shown, terminal.output
    finally:
        stop.set()
        loader.join()
        code = terminal.interrupt()
    assert code == 0
    screen = terminal.output
    assert "P50" in screen and "P99" in screen and "CPU%" in screen
    if plain:
        assert screen.count("\x1b[H\x1b[2J") >= 2  # redrawn
        rows = [line.split() for line in screen.replace("\r", "").splitlines()
                if line.split()[1:2] and line.split()[1] in map(str, pids)]
        assert any(row[3].isdigit() and row[7].startswith("≤") for row in rows), rows


def test_status_watch_redraws_the_status_table(serve, control):
    server = serve("--control", control, workers=2)
    terminal = Terminal("status", "--watch", "--control", control)
    try:
        assert terminal.wait_for(lambda out: out.count("\x1b[H\x1b[2J") >= 2), terminal.output
    finally:
        code = terminal.interrupt()
    assert code == 0
    last = terminal.output.split("\x1b[H\x1b[2J")[-1]
    assert "REQ/S" in last and all(str(pid) in last for pid in server.workers())


def test_top_without_a_server_is_one_line(control):
    result = subprocess.run([sys.executable, "-m", "fastcluster", "top", "--control", control],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stderr.startswith("fastcluster: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_top_with_a_bad_interval_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "fastcluster", "top", "--interval", "0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.startswith("fastcluster: error: ")


