"""Worker count and CPU lists: parsing, the cgroup quota read from a cgroup tree laid out on disk, and when
workers are pinned."""

from __future__ import annotations

import os

import pytest

from fastcluster.binds import parse_bind
from fastcluster.config import choose_pinning
from fastcluster.cpus import auto_worker_count, cgroup_cpu_limit, parse_cpu_list, pin_when_covered

ALLOWED = sorted(os.sched_getaffinity(0))


def test_cpu_lists():
    assert parse_cpu_list("0-3,8") == [0, 1, 2, 3, 8]
    assert parse_cpu_list("2,0-1,2") == [2, 0, 1]
    for bad in ("", "a", "3-1", "1,,2", "-1"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert auto_worker_count([0, 1, 2, 3], 1.5) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert auto_worker_count([0, 1, 2, 3], None) == 4


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 0.5
    assert auto_worker_count([0, 1], 0.5) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_binds():
    assert str(parse_bind("127.0.0.1:80")) == "127.0.0.1:80"
    assert parse_bind("[::1]:8080").host == "::1"
    assert parse_bind(":9000").host == "0.0.0.0"
    assert parse_bind("unix:/tmp/s").path == "/tmp/s"
    assert parse_bind("fd://3").fd == 3
    for bad in ("nowhere", "host:http", "unix:", "fd://x", "[::1]8080", "a:70000"):
        with pytest.raises(ValueError):
            parse_bind(bad)


def test_pinning_only_when_the_workers_cover_the_allowed_cpus():
    assert pin_when_covered(4, [0, 1, 2, 3]) == ([0, 1, 2, 3], "")
    assert pin_when_covered(6, [0, 1, 2, 3]) == ([0, 1, 2, 3], "")
    cpus, why = pin_when_covered(1, [0, 1, 2, 3])
    assert cpus is None and why.startswith("1 worker for 4 allowed CPUs")
    # A container whose quota (1.5 CPUs) is smaller than its CPU set: 2 workers, not pinned.
    cpus, why = pin_when_covered(auto_worker_count([0, 1, 2, 3], 1.5), [0, 1, 2, 3])
    assert cpus is None and why.startswith("2 workers for 4 allowed CPUs")


def test_choose_pinning():
    last = str(ALLOWED[-1])
    assert choose_pinning(last, True, "1") == (1, [ALLOWED[-1]], "")  # --cpus: pinned, whatever the count
    assert choose_pinning(None, True, str(len(ALLOWED))) == (len(ALLOWED), ALLOWED, "")
    assert choose_pinning(None, False, str(len(ALLOWED))) == (len(ALLOWED), None, "")  # --no-pin says nothing
    if len(ALLOWED) > 1:
        workers, cpus, why = choose_pinning(None, True, "1")
        assert (workers, cpus) == (1, None) and why
