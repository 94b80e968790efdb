"""What a benchmark run writes: results.md (tables with ratios), results.json, and results.png."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path


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
        },
    }


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}×" if base else "–"


def milliseconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(rows: list[dict], machine: dict, command: str) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    lines = [
        "# Benchmark results",
        "",
        f"`{command}` on {machine['date']}: {machine['cpu']}, {machine['cores']} cores, Linux "
        f"{machine['kernel']}, Python {machine['python']}; {versions}.",
        "",
        "Server pinned to CPU 1 with one worker (the workers-n scenario: every CPU, unpinned), wrk pinned to "
        "CPU 0 with 64 connections. **µs/req** is the server's CPU time (user + system, every process of "
        "it) per completed request; ratios compare it with nginx and the C floor measured in the same run, "
        "and fastcluster's with each peer's (below 1×: fastcluster uses less CPU per request).",
        "",
    ]
    for scenario in dict.fromkeys(row["scenario"] for row in rows):
        group = [row for row in rows if row["scenario"] == scenario]
        measured = {row["server"]: row["us_per_request"] for row in group if "us_per_request" in row}
        nginx, floor = measured.get("nginx"), measured.get("floor (C epoll)")
        ours = measured.get("fastcluster")
        notes: list[str] = []
        lines += [f"## {scenario}", "",
                  "| server | µs/req | vs nginx | vs floor | fastcluster vs it | req/s | p50 ms | p99 ms "
                  "| errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in sorted(group, key=lambda r: r.get("us_per_request", float("inf"))):
            if "us_per_request" not in row:
                lines.append(f"| {row['server']} | {row['skipped']} | | | | | | | |")
                continue
            us = row["us_per_request"]
            if "worker_spread_pct" in row:
                spread = row["worker_spread_pct"]
                notes.append(f"{row['server']}: each worker's CPU time within ±{spread}% of their mean")
            theirs = ratio(ours, us) if ours and row["server"] != "fastcluster" else "–"
            lines.append(f"| {row['server']} | {us:.2f} | {ratio(us, nginx)} | {ratio(us, floor)} | {theirs} "
                         f"| {row['rps']:,} | {milliseconds(row['p50_ms'])} | {milliseconds(row['p99_ms'])} "
                         f"| {row['errors']} |")
        lines.append("")
        lines += [f"{note}." for note in notes] + ([""] if notes else [])
    return "\n".join(lines)


COLORS = {"fastcluster": "tab:orange", "floor (C epoll)": "tab:blue", "nginx": "tab:green"}


def chart(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    scenarios = [s for s in dict.fromkeys(row["scenario"] for row in rows)
                 if any("us_per_request" in row for row in rows if row["scenario"] == s)]
    if not scenarios:
        return False
    columns = min(3, len(scenarios))
    height = (len(scenarios) + columns - 1) // columns
    figure, axes = plt.subplots(height, columns, figsize=(5 * columns, 3.2 * height), squeeze=False)
    for axis, scenario in zip(axes.flat, scenarios):
        group = sorted((row for row in rows if row["scenario"] == scenario and "us_per_request" in row),
                       key=lambda row: row["us_per_request"], reverse=True)
        names = [row["server"] for row in group]
        values = [row["us_per_request"] for row in group]
        colors = [COLORS.get(name, "tab:gray") for name in names]
        axis.barh(names, values, color=colors)
        for index, value in enumerate(values):
            axis.text(value, index, f" {value:.2f}", va="center", fontsize=8)
        axis.set_title(scenario)
        axis.set_xlabel("server CPU µs per request (lower is better)")
        axis.set_xlim(0, max(values) * 1.25)
    for axis in list(axes.flat)[len(scenarios):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def write_reports(rows: list[dict], out: Path, machine: dict, charts: bool, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "results.md"]
    document = {"command": command, "machine": machine, "results": rows}
    written[0].write_text(json.dumps(document, indent=2) + "\n")
    written[1].write_text(markdown(rows, machine, command) + "\n")
    if charts and chart(rows, out / "results.png"):
        written.append(out / "results.png")
    return written
