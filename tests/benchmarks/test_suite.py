"""A smoke run of the benchmark suite: one scenario, one second, fastcluster and the C floor."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_one_scenario_for_one_second(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scenarios", "plaintext",
                           "--servers", "fastcluster,floor", "--duration", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[plaintext] fastcluster" in done.stderr  # the progress line
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["machine"]["cores"] >= 1
    fastcluster = next(row for row in results["results"] if row["server"] == "fastcluster")
    assert fastcluster["requests"] > 1000 and fastcluster["errors"] == 0
    assert 0 < fastcluster["us_per_request"] < 1000
    table = (tmp_path / "results.md").read_text()
    assert "## plaintext" in table and "| fastcluster |" in table
    if (ROOT.parent / "shared" / "bench" / "ref_epoll.c").exists():
        assert "| floor (C epoll) |" in table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


def test_unknown_scenario_is_refused():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scenarios", "nope"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown scenarios: nope" in done.stderr
