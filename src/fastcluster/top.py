"""`fastcluster top` (as `pm2 monit` or htop) and `status --watch`: a running server's workers refreshed
every second. top adds what one snapshot cannot say: CPU % (from /proc, the server runs on this host since
its control socket is a Unix socket) and the latency percentiles of the last interval (the difference of
two snapshots of each worker's histogram). Drawn with rich when it is installed (the `top` extra), else
with plain ANSI escapes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastcluster.core.stats import LATENCY_BOUNDS
from fastcluster.status import duration, render_status, size

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COLUMNS = ("slot", "pid", "state", "cpu%", "rss", "req/s", "conns", "p50", "p90", "p99", "restarts", "uptime")
#: Clear the screen and go home: the plain view redraws the whole table each time.
CLEAR = "\x1b[H\x1b[2J"


@dataclass
class Sample:
    at: float
    ticks: int
    latency: list[int]


@dataclass
class Sampler:
    """What top keeps between refreshes: each worker's CPU ticks and latency buckets the last time."""

    previous: dict[int, Sample] = field(default_factory=dict)

    def rows(self, snapshot: dict) -> list[list[str]]:
        now = time.monotonic()
        current: dict[int, Sample] = {}
        rows = []
        for worker in snapshot["workers"]:
            pid = worker["pid"]
            sample = current[pid] = Sample(now, cpu_ticks(pid), list(worker.get("latency") or []))
            before = self.previous.get(pid)
            usage = percentiles = None
            if before is not None and now > before.at:
                usage = (sample.ticks - before.ticks) / CLOCK_TICKS / (now - before.at) * 100
                percentiles = [percentile([a - b for a, b in zip(sample.latency, before.latency)], q)
                               for q in (0.5, 0.9, 0.99)]
            rows.append([
                str(worker["slot"]), str(pid), worker["state"], "-" if usage is None else f"{usage:.0f}",
                size(worker["rss"]), f"{worker['requests_per_second']:.0f}", str(worker["connections"]),
                *(percentiles or ["-"] * 3), str(worker["restarts"]), duration(worker["uptime"]),
            ])
        self.previous = current
        return rows


def cpu_ticks(pid: int) -> int:
    """User and system CPU time of a process so far, in clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    except (OSError, IndexError, ValueError):
        return 0


def percentile(buckets: list[int], q: float) -> str:
    """The upper bound of the bucket holding the q-quantile ("-" with no request), e.g. "≤5ms"."""
    total = sum(buckets)
    if total <= 0:
        return "-"
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= q * total:
            if index >= len(LATENCY_BOUNDS):
                return f">{milliseconds(LATENCY_BOUNDS[-1])}"
            return f"≤{milliseconds(LATENCY_BOUNDS[index])}"
    return "-"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def heading(snapshot: dict) -> str:
    master = snapshot["master"]
    return (f"fastcluster master {master['pid']} {master['state']}, up {duration(master['uptime'])}, "
            f"{master['workers']} workers on {', '.join(master['addresses'])}; "
            f"{snapshot['totals'].get('requests', 0)} requests, {master['restarts']} restarts")


def plain_table(snapshot: dict, rows: list[list[str]]) -> str:
    widths = [max(len(name), *(len(row[i]) for row in rows)) if rows else len(name)
              for i, name in enumerate(COLUMNS)]
    lines = [heading(snapshot), "  ".join(name.upper().rjust(width) for name, width in zip(COLUMNS, widths))]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    failed = [f"slot {index} failed: {slot['boot_failed']}"
              for index, slot in sorted(snapshot["slots"].items()) if slot.get("boot_failed")]
    return "\n".join(lines + failed)


def rich_table(snapshot: dict, rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=heading(snapshot), title_justify="left")
    for name in COLUMNS:
        table.add_column(name.upper(), justify="right")
    for row in rows:
        style = {"serving": None, "booting": "yellow", "draining": "dim"}.get(row[2], "red")
        table.add_row(*row, style=style)
    for index, slot in sorted(snapshot["slots"].items()):
        if slot.get("boot_failed"):
            table.add_row(str(index), "-", "failed", *["-"] * (len(COLUMNS) - 3), style="red")
    return table


def run_top(fetch: Callable[[], dict], interval: float, plain: bool) -> None:
    """Redraw every interval until interrupted (KeyboardInterrupt) or the server is gone (ControlError)."""
    sampler = Sampler()
    try:
        from rich.live import Live
    except ImportError:
        plain = True
    if plain:
        def text() -> str:
            snapshot = fetch()
            return plain_table(snapshot, sampler.rows(snapshot))

        refresh(text, interval)
        return
    with Live(auto_refresh=False, screen=False) as live:
        while True:
            snapshot = fetch()
            live.update(rich_table(snapshot, sampler.rows(snapshot)), refresh=True)
            time.sleep(interval)


def watch_status(fetch: Callable[[], dict], interval: float) -> None:
    """`status --watch`: the status table, redrawn every interval."""
    refresh(lambda: render_status(fetch()), interval)


def refresh(text: Callable[[], str], interval: float) -> None:
    while True:
        sys.stdout.write(CLEAR + text() + "\n")
        sys.stdout.flush()
        time.sleep(interval)

