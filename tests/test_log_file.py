"""--log-file and `fastcluster logs`: the workers' stdout and stderr and the master's records in one file,
each line tagged with slot and pid; size rotation; logs --lines and --follow, found through the control
socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.app.client import fetch
from tests.conftest import ctrl_c_works, wait_until

APP = """
import sys


def app(environ, start_response):
    print("printed", environ["PATH_INFO"])
    sys.stderr.write("to stderr " + environ["PATH_INFO"] + "\\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "printing.py").write_text(APP)
    return str(tmp_path)


def text_or_nothing(path) -> str:
    """The file's text; nothing in the moment between a rotation's rename of it and the new file."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def logs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", "logs", *args], capture_output=True,
                          text=True, timeout=30)


def test_worker_output_and_master_records_are_tagged_lines_of_the_log_file(serve, control, app_dir, tmp_path):
    path = tmp_path / "server.log"
    server = serve("printing:app", "--app-dir", app_dir, "--control", control, "--log-file", str(path),
                   workers=2)
    fetch(server, "/first")
    assert wait_until(lambda: "to stderr /first" in path.read_text(), 3)
    text = path.read_text()
    [printed] = [line for line in text.splitlines() if line.endswith("| printed /first")]
    [written] = [line for line in text.splitlines() if line.endswith("| to stderr /first")]
    pids = server.workers()
    slot, pid = printed.split(" | ")[0].split()[1::2]
    assert int(pid) in pids and slot in ("0", "1") and written.startswith(f"worker {slot} pid {pid} | ")
    assert f"master pid {server.pid} | " in text and "listening on" in text
    assert "listening on" not in server.read_output()  # the master's records went to the file only
    result = logs("--control", control, "--lines", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == text.splitlines()[-2:]


def test_the_log_file_rotates_by_size_keeping_the_backups_asked_for(serve, control, tmp_path):
    path = tmp_path / "server.log"
    server = serve("--control", control, "--log-file", str(path), "--log-max-size", "2k",
                   "--log-backups", "2", "--access-log", "-")
    for index in range(100):
        fetch(server, f"/json?n={index}")
    assert wait_until(lambda: "n=99 " in text_or_nothing(path), 5)
    assert sorted(os.listdir(tmp_path)) == ["server.log", "server.log.1", "server.log.2"]
    sizes = [os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)]
    assert all(0 < size <= 2048 for size in sizes), sizes
    newest_rotated = (tmp_path / "server.log.1").read_text().splitlines()[-1]
    first_now = path.read_text().splitlines()[0]
    assert int(newest_rotated.split("n=")[1].split()[0]) + 1 == int(first_now.split("n=")[1].split()[0])


def test_logs_follow_prints_new_lines_across_a_rotation(serve, control, tmp_path):
    path = tmp_path / "server.log"
    server = serve("--control", control, "--log-file", str(path), "--log-max-size", "4k", "--access-log", "-")
    follower = subprocess.Popen([sys.executable, "-m", "fastcluster", "logs", "--follow", "--lines", "0",
                                 "--control", control], stdout=subprocess.PIPE, text=True,
                                preexec_fn=ctrl_c_works)
    try:
        assert wait_until(lambda: follower.poll() is None and len(os.listdir(tmp_path)) == 1, 3)
        for index in range(60):  # about 6 KiB of lines: one rotation
            fetch(server, f"/json?n={index}")
        seen = []
        while not any("n=59 " in line for line in seen):
            seen.append(follower.stdout.readline())
            assert seen[-1], "the follower stopped"
        numbers = [int(line.split("n=")[1].split()[0]) for line in seen if "n=" in line]
        assert numbers == list(range(60)) and os.path.exists(f"{path}.1")
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(5) == 0


def test_logs_of_a_server_without_a_log_file_says_so(serve, control):
    serve("--control", control)
    result = logs("--control", control)
    assert result.returncode == 1 and "has no --log-file" in result.stderr


def test_logs_without_a_server_is_one_line(control):
    result = logs("--control", control)
    assert result.returncode == 1 and result.stderr.startswith("fastcluster: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", [["--log-max-size", "big"], ["--log-backups", "-1"]])
def test_bad_log_file_flags_give_one_line_and_status_2(flag):
    result = subprocess.run([sys.executable, "-m", "fastcluster", "serve", *flag], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.startswith("fastcluster: error: ")
