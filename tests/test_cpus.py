"""Worker count and CPU lists: parsing, and the cgroup quota read from a cgroup tree laid out on disk."""

from __future__ import annotations

import pytest

from fastcluster.binds import parse_bind
from fastcluster.cpus import auto_worker_count, cgroup_cpu_limit, parse_cpu_list


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
