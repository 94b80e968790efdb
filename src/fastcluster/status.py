"""`fastcluster status`: the master's snapshot as a table, one row per worker process (like `pm2 ls`)."""

from __future__ import annotations

COLUMNS = ("slot", "pid", "cpu", "state", "uptime", "restarts", "requests", "req/s", "conns", "rss")


def render_status(snapshot: dict) -> str:
    master = snapshot["master"]
    rows = [[
        str(row["slot"]), str(row["pid"]), "-" if row["cpu"] is None else str(row["cpu"]), row["state"],
        duration(row["uptime"]), str(row["restarts"]), str(row["requests"]),
        f"{row['requests_per_second']:.0f}", str(row["connections"]), size(row["rss"]),
    ] for row in snapshot["workers"]]
    widths = [max(len(heading), *(len(row[i]) for row in rows)) if rows else len(heading)
              for i, heading in enumerate(COLUMNS)]
    right = {0, 1, 2, 5, 6, 7, 8, 9}

    def line(cells) -> str:
        return "  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    header = (f"fastcluster master {master['pid']} {master['state']}, up {duration(master['uptime'])}, "
              f"{master['workers']} workers on {', '.join(master['addresses'])}; "
              f"{snapshot['totals'].get('requests', 0)} requests, {master['restarts']} restarts, "
              f"{master['reloads']} reloads")
    return "\n".join([header, line([heading.upper() for heading in COLUMNS]), *(line(row) for row in rows)])


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def size(count: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if count < 1024 or unit == "G":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return f"{count}"
