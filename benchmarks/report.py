"""What a benchmark run writes: results.md (tables with ratios), results.json, and results.png; with several
rounds, each figure is the median of its rounds, each ratio the median of the rounds' own ratios, and
results.md shows their min–max beside them."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from servers import Floor

# A reference, not a peer: a loop with no HTTP parsing or checks (ref_epoll.c; wsgi_floor.c for WSGI apps).
FLOOR = Floor.name


def version_of(command: list[str], pattern: str = r"[\d]+\.[\d.]+") -> str:
    if shutil.which(command[0]) is None:
        return "absent"
    done = subprocess.run(command, capture_output=True, text=True)
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(0) if found else "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_description() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            "fastcluster": package_version("fastcluster-server"),
            "httptools": package_version("httptools"),
            "nginx": version_of(["nginx", "-v"]),
            "wrk": version_of(["wrk", "-v"]),
            "uvicorn": package_version("uvicorn"),
            "uvloop": package_version("uvloop"),
            "granian": package_version("granian"),
            "gunicorn": package_version("gunicorn"),
            **{name: package_version(name) for name in ("fastapi", "pydantic", "django", "flask")},
        },
    }


def ratio(row: dict, base: dict | None, name: str = "us_per_request",
          base_name: str = "us_per_request") -> str:
    """row[name] over base[base_name]. With rounds, the median of each round's own ratio, and their min–max:
    the servers of a round run minutes apart at most, so a slow spell of the machine slows both sides of
    a round's ratio, while it moves the medians of the figures apart when it catches one server's rounds."""
    if base is None:
        return "–"
    if base is row:
        return "1.00×"
    pairs = list(zip(row.get("each_round", []), base.get("each_round", [])))
    ratios = [mine[name] / theirs[base_name] for mine, theirs in pairs
              if name in mine and theirs.get(base_name, 0) > 0]
    if len(ratios) > 1 and len(pairs) == len(row["each_round"]) == len(base["each_round"]):
        return f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
    return f"{row[name] / base[base_name]:.2f}×" if base.get(base_name, 0) > 0 else "–"


def two_decimals(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def with_spread(figures: dict, name: str) -> str:
    """figures[name] and, when it is the median of several rounds, their min–max: 7.83 (7.61–8.02)."""
    if f"{name}_min" not in figures:
        return f"{figures[name]:.2f}"
    return f"{figures[name]:.2f} ({figures[name + '_min']:.2f}–{figures[name + '_max']:.2f})"


def add_app_alone(rows: list[dict], app_alone: dict[str, dict]) -> None:
    """Give each measured row of an app scenario the app's own cost and the server's share beyond it."""
    for row in rows:
        alone = app_alone.get(row["scenario"], {}).get("us_per_call")
        if "us_per_request" in row and row["scenario"] in app_alone:
            row["app_alone_us"] = alone
            row["server_share_us"] = None if alone is None else round(row["us_per_request"] - alone, 3)


def server_table(group: list[dict]) -> list[str]:
    """A scenario's table with each server against nginx, the C floor and fastcluster; notes on the spread."""
    measured = {row["server"]: row for row in group if "us_per_request" in row}
    nginx, floor = measured.get("nginx"), measured.get(FLOOR)
    ours = measured.get("fastcluster")

    def cells(row: dict) -> list[str]:
        theirs = ratio(ours, row) if ours and row["server"] != "fastcluster" else "–"
        return [with_spread(row, "us_per_request"), ratio(row, nginx), ratio(row, floor), theirs]

    notes = [f"{row['server']}: each worker's CPU time within ±{row['worker_spread_pct']}% of their mean."
             for row in group if "worker_spread_pct" in row]
    lines = table(group, ["µs/req", "vs nginx", "vs floor", "fastcluster vs it"], cells)
    return lines + ["", *notes] if notes else lines


def app_table(group: list[dict], alone: dict) -> list[str]:
    """An app scenario's table: each server's CPU per request, the app's own part, the server's share."""
    measured = [row for row in group if "us_per_request" in row]
    peers = [row for row in measured if row["server"] not in ("fastcluster", FLOOR)]
    best = min(peers, key=lambda row: row["us_per_request"], default=None)
    if "us_per_call" in alone:
        said = f"the app alone (no server, in one process) costs {with_spread(alone, 'us_per_call')} µs " \
               f"per call ({alone['calls']:,} calls)"
    else:
        said = f"the app alone could not be measured ({alone.get('failed', 'not run')})"
    connections = ", ".join(str(number) for number in sorted({row["connections"] for row in measured}))
    against = f"the best peer, {best['server']}" if best else "the best peer (none measured)"
    lines = [f"wrk with {connections or '–'} connections; {said}; **share** is µs/req minus that: at most "
             f"the server's own work (see benchmarks/README.md). Ratios are against {against}.", ""]
    best_share = best.get("server_share_us") if best else None
    alone_row = alone if "us_per_call" in alone else None

    def cells(row: dict) -> list[str]:
        share = row.get("server_share_us")
        shares_positive = share and share > 0 and best_share and best_share > 0
        return [with_spread(row, "us_per_request"), two_decimals(row.get("app_alone_us")),
                two_decimals(share), ratio(row, alone_row, base_name="us_per_call"),
                ratio(row, best), f"{share / best_share:.2f}×" if shares_positive else "–"]

    columns = ["µs/req", "app alone µs", "share µs", "vs app alone", "vs best peer", "share vs best peer"]
    return lines + table(group, columns, cells)


def table(group: list[dict], columns: list[str], cells: Callable[[dict], list[str]]) -> list[str]:
    """A scenario's table, least CPU first: the server, `columns` (cells(row) fills them), wrk's figures."""
    heads = ["server", *columns, "req/s", "p50 ms", "p99 ms", "errors"]
    lines = ["| " + " | ".join(heads) + " |", "| --- |" + " ---: |" * (len(heads) - 1)]
    for row in sorted(group, key=lambda r: r.get("us_per_request", float("inf"))):
        if "us_per_request" not in row:
            lines.append(f"| {row['server']} | {row['skipped']} |" + " |" * (len(heads) - 2))
            continue
        values = [row["server"], *cells(row), f"{row['rps']:,}", two_decimals(row["p50_ms"]),
                  two_decimals(row["p99_ms"]), str(row["errors"])]
        lines.append("| " + " | ".join(values) + " |")
    return lines


def markdown(rows: list[dict], app_alone: dict[str, dict], machine: dict, command: str, rounds: int) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    medians = ""
    if rounds > 1:
        medians = (f" Each figure is the median of {rounds} rounds (every server once per round, in turn, "
                   "every other round in the reverse order), "
                   "each ratio is the median of the rounds' own ratios (a share's: between the medians), "
                   "and brackets hold the rounds' min–max.")
    lines = [
        "# Benchmark results",
        "",
        f"`{command}` on {machine['date']}: {machine['cpu']}, {machine['cores']} cores, Linux "
        f"{machine['kernel']}, Python {machine['python']}; {versions}.{medians}",
        "",
        "Server pinned to CPU 1 with one worker (the workers-n scenario: every CPU, unpinned), wrk pinned to "
        "CPU 0 with 64 connections unless a table says otherwise. **µs/req** is the server's CPU time (user "
        "+ system, every process of it) per completed request; ratios compare it with nginx and the C floor "
        "measured in the same run, and fastcluster's with each peer's (below 1×: fastcluster uses less CPU "
        "per request). Tables of scenarios that run an app compare with the best peer instead, and split "
        "µs/req into the app's own cost (measured with no server) and the server's share.",
        "",
    ]
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        group = [row for row in rows if row["scenario"] == scenario]
        body = app_table(group, app_alone[scenario]) if scenario in app_alone else server_table(group)
        lines += [f"## {scenario}", "", *body, ""]
    return "\n".join(lines)


COLORS = {"fastcluster": "tab:orange", FLOOR: "tab:blue", "nginx": "tab:green"}


def chart(rows: list[dict], path: Path, machine: dict) -> bool:
    """The PNG of the results: a panel per scenario, under a title with the date and the machine, and a
    legend of the colours (and of the hatched part: the app alone)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    figure = draw(plt, rows, machine)
    if figure is None:
        return False
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def draw(plt, rows: list[dict], machine: dict):
    from matplotlib.patches import Patch

    scenarios = [s for s in dict.fromkeys(row["scenario"] for row in rows)
                 if any("us_per_request" in row for row in rows if row["scenario"] == s)]
    if not scenarios:
        return None
    columns = min(3, len(scenarios))
    height = (len(scenarios) + columns - 1) // columns
    figure, axes = plt.subplots(height, columns, figsize=(5 * columns, 3.2 * height + 1.0), squeeze=False)
    servers: dict[str, str] = {}
    hatched = False
    for axis, scenario in zip(axes.flat, scenarios):
        group = sorted((row for row in rows if row["scenario"] == scenario and "us_per_request" in row),
                       key=lambda row: row["us_per_request"], reverse=True)
        names = [row["server"] for row in group]
        values = [row["us_per_request"] for row in group]
        colors = [COLORS.get(name, "tab:gray") for name in names]
        servers.update(zip(names, colors))
        axis.barh(names, values, color=colors)
        alone = [row.get("app_alone_us") for row in group]
        if any(alone):  # the app's own part of each bar, so what is left is the server's share
            hatched = True
            axis.barh(names, [min(part or 0, value) for part, value in zip(alone, values)], color="white",
                      alpha=0.5, hatch="//", edgecolor="black", linewidth=0)
        for index, value in enumerate(values):
            axis.text(value, index, f" {value:.2f}", va="center", fontsize=8)
        axis.set_title(scenario)
        axis.set_xlabel("server CPU µs per request (lower is better)")
        axis.set_xlim(0, max(values) * 1.25)
    for axis in list(axes.flat)[len(scenarios):]:
        axis.axis("off")
    figure.suptitle(f"CPU per request, lower is better — {machine.get('date', '')}, "
                    f"{machine.get('cores', '?')} cores, {machine.get('cpu', '')}", fontsize=10)
    handles = [Patch(color=color, label=name) for name, color in servers.items() if color != "tab:gray"]
    if any(color == "tab:gray" for color in servers.values()):
        handles.append(Patch(color="tab:gray", label="other servers"))
    if hatched:
        handles.append(Patch(facecolor="white", hatch="//", edgecolor="black", label="the app alone"))
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 0.95))
    return figure


def write_reports(rows: list[dict], app_alone: dict[str, dict], out: Path, machine: dict, charts: bool,
                  command: str, rounds: int) -> list[Path]:
    """app_alone: per app scenario, the app's own µs per call with no server (or why it failed); rows and
    app_alone hold the medians when rounds > 1."""
    add_app_alone(rows, app_alone)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "results.md"]
    document = {"command": command, "machine": machine, "app_alone": app_alone, "results": rows}
    if rounds > 1:  # one round writes what the suite always wrote
        document = {"rounds": rounds, **document}
    written[0].write_text(json.dumps(document, indent=2) + "\n")
    written[1].write_text(markdown(rows, app_alone, machine, command, rounds) + "\n")
    if charts and chart(rows, out / "results.png", machine):
        written.append(out / "results.png")
    return written
