"""The open-files limit: raised to the hard limit at start, with a warning when it is below the connections
asked for."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest


def soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files line")


@pytest.fixture
def low_soft_limit():
    """Start servers with a soft limit far below the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 512:
        pytest.skip("needs a finite hard limit above 512")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_workers_get_the_hard_limit(serve, low_soft_limit):
    server = serve()
    [worker] = server.workers()
    assert soft_limit_of(worker) == low_soft_limit
    server.stop()
    assert f"open files limit {low_soft_limit}: up to about {low_soft_limit - 300} connections per worker" \
        in server.read_output()


def test_a_limit_below_limit_connections_is_said(serve, low_soft_limit):
    server = serve("--limit-connections", str(low_soft_limit * 2))
    server.stop()
    assert (f"open files limit {low_soft_limit} (hard {low_soft_limit}) leaves room for about "
            f"{low_soft_limit - 300} connections per worker, fewer than --limit-connections "
            f"{low_soft_limit * 2}") in server.read_output()
