"""How a run is measured: server CPU time over its whole process tree, and wrk pinned to CPU 0."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

PIPELINE_LUA = """-- 16 pipelined requests per write, as in the TechEmpower plaintext test
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, wrk.path) end
  req = table.concat(r)
end
request = function() return req end
"""


def process_tree(root: int) -> list[int]:
    """root and every descendant (children of every thread), found through /proc."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    """user + system time of the processes (fields 14 and 15 of /proc/PID/stat; titles may hold spaces)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float | None  # None: wrk printed no usable percentile
    p99_ms: float | None
    errors: int
    error_text: str


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> WrkResult:
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors, text = 0, []
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(map(int, socket_errors.groups()))
        text.append(socket_errors.group(0))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
        text.append(non_2xx.group(0))
    return WrkResult(requests, rps, percentile(p50), percentile(p99), errors, "; ".join(text))


def percentile(found: re.Match | None) -> float | None:
    """wrk's latency percentile in ms; with pipelining wrk often prints 0.00us, which means not measured."""
    value = to_ms(found.group(1)) if found else 0.0
    return value or None


def run_wrk(url: str, seconds: float, connections: int, script: Path | None, cpu: int | None) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)
