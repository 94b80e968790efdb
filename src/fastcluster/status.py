"""`fastcluster status`: the master's snapshot as a table, one row per worker process (like `pm2 ls`)."""

from __future__ import annotations

COLUMNS = ("slot", "pid", "cpu", "state", "uptime", "restarts", "requests", "req/s", "conns", "rss")


def render_status(snapshot: dict) -> str:
    master = snapshot["master"]
    rows = [[
        str(row["slot"]), str(row["pid"]), cpu(row["cpu"]), row["state"],
        duration(row["uptime"]), str(row["restarts"]), str(row["requests"]),
        f"{row['requests_per_second']:.0f}", str(row["connections"]), size(row["rss"]),
    ] for row in snapshot["workers"]]
    # A slot whose worker could not start has no process: it is a row of its own, its reason below.
    failed = sorted((int(index), slot) for index, slot in snapshot["slots"].items()
                    if slot.get("boot_failed"))
    with_process = {row["slot"] for row in snapshot["workers"]}
    rows += [[str(index), "-", cpu(slot["cpu"]), "failed", "-", str(slot["restarts"]),
              str(slot.get("requests", 0)), "-", "0", "-"]
             for index, slot in failed if index not in with_process]
    rows.sort(key=lambda row: int(row[0]))
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
    reasons = [f"slot {index} failed: {slot['boot_failed']} ({slot['failed_tries']} failed starts in a row"
               + (f"; next try in {slot['retry_in']:g}s)" if slot.get("retry_in") is not None else ")")
               for index, slot in failed]
    return "\n".join([header, line([heading.upper() for heading in COLUMNS]), *(line(row) for row in rows),
                      *reasons])


def cpu(number: int | None) -> str:
    return "-" if number is None else str(number)


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
