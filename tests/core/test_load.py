"""A short real load from wrk: no errors keep-alive or pipelined; with reuseport each worker gets a share."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from benchmarks.measure import PIPELINE_LUA

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")



def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def start_wrk(port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(["wrk", "-t1", "-c32", "-d1s", *extra, f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("balance", ["reuseport", "shared"])
def test_wrk_keep_alive_and_pipelined_without_errors(serve, tmp_path, balance):
    server = serve("--balance", balance, workers=2)
    workers = server.workers()
    before = {pid: cpu_ticks(pid) for pid in workers}
    script = tmp_path / "pipeline.lua"
    script.write_text(PIPELINE_LUA)
    # Keep-alive and pipelined clients side by side, for wrk's shortest run (a second).
    for wrk in [start_wrk(server.port), start_wrk(server.port, "-s", str(script))]:
        output, errors = wrk.communicate(timeout=30)
        assert wrk.returncode == 0, errors
        assert "Socket errors" not in output and "Non-2xx" not in output, output
        assert int(re.search(r"(\d+) requests in", output).group(1)) > 1000, output
    if balance == "reuseport":  # the kernel hashes connections over the sockets; a shared one promises less
        assert all(cpu_ticks(pid) > before[pid] for pid in workers), "a worker took no share of the load"
