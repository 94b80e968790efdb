"""Which CPUs the workers run on: CPU-list parsing, the affinity mask, the cgroup CPU quota, and whether
to pin at all."""

from __future__ import annotations

import math
import os
from pathlib import Path


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8] (order kept, duplicates dropped); ValueError on anything else."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in CPU list {text!r}")
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"bad CPU list item {part!r} (expected N or N-M)")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.extend(cpu for cpu in range(low, high + 1) if cpu not in cpus)
    return cpus


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup quota allows (v2 cpu.max, else v1 cfs quota); None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def auto_worker_count(cpus: list[int], quota: float | None) -> int:
    """One worker per usable CPU, no more than the quota can keep busy (rounded up), at least one."""
    count = len(cpus)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def pin_when_covered(workers: int, allowed: list[int]) -> tuple[list[int] | None, str]:
    """The CPUs to pin the workers to when no --cpus chose them, or None and why not.

    Pinning pays only when the workers cover the allowed CPUs. With fewer workers than CPUs, worker i on
    the i-th allowed CPU would put every such server (two `--workers 1` servers on one host, or a container
    whose CPU quota is smaller than its CPU set) on the same first CPUs while the others idle; unpinned,
    the kernel spreads them."""
    if workers >= len(allowed):
        return allowed, ""
    return None, (f"{workers} worker{'s' if workers != 1 else ''} for {len(allowed)} allowed CPUs: pinning "
                  "needs a worker per allowed CPU, or --cpus; the kernel schedules them")
