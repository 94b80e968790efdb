"""A short soak (benchmarks/soak.py): mixed traffic for 12 s, then each worker's RSS must be flat after the
warm-up and its descriptors back to where they were."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_short_soak_leaves_memory_and_descriptors_flat():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", "12",
                           "--interval", "1", "--connections", "16", "--rss-bound", "3"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| builtin |" in done.stdout and "| asgi |" in done.stdout, done.stdout
    assert "\nflat" in done.stdout
