"""WebSocket echo cost per message: fastcluster's built-in /ws and a FastAPI echo app under fastcluster,
uvicorn (websockets, wsproto, websockets-sansio) and granian, beside fastcluster's HTTP keep-alive request.

    python benchmarks/websocket.py [--rounds 3] [--duration 4] [--warmup 1] [--connections 64] [--runs a,b]
                                   [--baseline SRC]

Each server runs one worker pinned to CPU 1; the load (ws_load.c, compiled here with gcc, or wrk for
HTTP) is pinned to CPU 0 and keeps one small text message in flight per connection. The figure is the
server's CPU time (user + system over its process tree) per message echoed, or per HTTP request. Every
round runs every server once, in turn, and the ratios are taken within a round; the medians are printed.
--baseline measures the fastcluster runs a second time with another build's package directory first on
PYTHONPATH (its `src`), to compare two builds in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import cpu_seconds, process_tree, run_wrk  # noqa: E402
from run import SERVER_CPU, WRK_CPU, free_port, stop, wait_listening  # noqa: E402
from servers import HERE, Fastcluster, Granian, Launch, Scenario, Uvicorn  # noqa: E402

BUILTIN = Scenario("websocket")
ECHO_APP = Scenario("websocket", kind="asgi", app="fastapi_ws_app:app")


@dataclass
class Run:
    name: str
    launch: Callable[[int, Path], Launch]
    path: str = "/ws"  # the WebSocket's path; "" measures HTTP keep-alive requests to / with wrk
    needs: str = ""  # the package the server needs
    env: dict[str, str] | None = None  # added to the server's environment


def uvicorn_with(ws: str) -> Callable[[int, Path], Launch]:
    def launch(port: int, work: Path) -> Launch:
        found = Uvicorn().launch(ECHO_APP, port, work)
        return Launch([*found.command, "--ws", ws], found.env, found.cwd)
    return launch


def fastcluster(scenario: Scenario) -> Callable[[int, Path], Launch]:
    return lambda port, work: Fastcluster().launch(scenario, port, work)


RUNS = [
    Run("fastcluster /ws", fastcluster(BUILTIN)),
    Run("fastcluster HTTP", fastcluster(BUILTIN), path=""),
    Run("FastAPI fastcluster", fastcluster(ECHO_APP), needs="fastapi"),
    Run("FastAPI uvicorn websockets", uvicorn_with("websockets"), needs="websockets"),
    Run("FastAPI uvicorn wsproto", uvicorn_with("wsproto"), needs="wsproto"),
    Run("FastAPI uvicorn websockets-sansio", uvicorn_with("websockets-sansio"), needs="websockets"),
    Run("FastAPI granian", lambda port, work: Granian().launch(ECHO_APP, port, work), needs="granian"),
]
# (what, over what, at most): the targets, each a ratio of CPU per message within a round
TARGETS: list[tuple[str, str, float | None]] = [
    ("FastAPI fastcluster", "FastAPI uvicorn websockets", 0.3),
    ("FastAPI fastcluster", "FastAPI uvicorn wsproto", 0.3),
    ("FastAPI fastcluster", "FastAPI uvicorn websockets-sansio", 0.3),
    ("FastAPI fastcluster", "FastAPI granian", 0.6),
    ("fastcluster /ws", "fastcluster HTTP", 1.2),
]
BASELINE = " (baseline)"


def ws_load(binary: Path, port: int, path: str, connections: int, seconds: float) -> int:
    """Messages echoed in `seconds` by `connections` clients (ws_load pinned to the load's CPU)."""
    done = subprocess.run(["taskset", "-c", str(WRK_CPU), str(binary), str(port), path, str(connections),
                           str(seconds)], capture_output=True, text=True, timeout=seconds + 30)
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) < 4 or fields[0] != "messages":
        raise RuntimeError(f"ws_load failed: {done.stderr.strip() or done.stdout.strip()}")
    messages, errors = int(fields[1]), int(fields[3])
    if errors or not messages:
        raise RuntimeError(f"ws_load: {messages} messages, {errors} errors")
    return messages


def measure(run: Run, args: argparse.Namespace, work: Path, binary: Path) -> tuple[float, float]:
    """Server CPU µs per message (or per request), and messages per second, for one run of one server."""
    port = free_port()
    launch = run.launch(port, work)
    env = {**os.environ, **launch.env, **(run.env or {})}
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *launch.command], env=env, cwd=launch.cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_listening(port, proc, timeout=20)
        if run.path:
            def load(seconds: float) -> int:
                return ws_load(binary, port, run.path, args.connections, seconds)
        else:
            def load(seconds: float) -> int:
                result = run_wrk(f"http://127.0.0.1:{port}/", seconds, args.connections, None, WRK_CPU)
                if result.errors:
                    raise RuntimeError(f"wrk: {result.error_text}")
                return result.requests
        if args.warmup:
            load(args.warmup)
        pids = process_tree(proc.pid)
        before = cpu_seconds(pids)
        done = load(args.duration)
        used = cpu_seconds(process_tree(proc.pid)) - before
        return used * 1e6 / done, done / args.duration
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        said = proc.stderr.read().decode(errors="replace")[-300:].strip() if proc.poll() is not None else ""
        raise RuntimeError(f"{run.name}: {exc}" + (f" ({said})" if said else "")) from None
    finally:
        stop(proc)


def parse_args() -> tuple[argparse.Namespace, list[Run]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="every server once per round (default 3)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per run (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of the same load before each run, 0 for none (default 1)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", default=",".join(run.name for run in RUNS),
                        help="comma-separated names, default all: " + ", ".join(run.name for run in RUNS))
    parser.add_argument("--baseline", type=Path, help="another build's src directory, measured alongside")
    args = parser.parse_args()
    names = args.runs.split(",")
    unknown = set(names) - {run.name for run in RUNS}
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    for tool in ("gcc", "wrk", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found")
    chosen = []
    for run in RUNS:
        if run.name not in names:
            continue
        if run.needs and importlib.util.find_spec(run.needs) is None:
            print(f"skipped {run.name}: {run.needs} is not installed", file=sys.stderr)
            continue
        chosen.append(run)
        if args.baseline and "fastcluster" in run.name:
            chosen.append(Run(run.name + BASELINE, run.launch, run.path, run.needs,
                              {"PYTHONPATH": str(args.baseline.resolve())}))
    return args, chosen


def summary(figures: dict[str, list[float]]) -> None:
    print("\nmedian µs per message (HTTP: per request), and the ratios (medians of each round's):")
    for name, values in figures.items():
        print(f"  {name:39} {statistics.median(values):8.2f}   ({', '.join(f'{v:.2f}' for v in values)})")
    for what, over, limit in TARGETS + [(run.name, run.name + BASELINE, None) for run in RUNS]:
        if what not in figures or over not in figures:
            continue
        ratios = [a / b for a, b in zip(figures[what], figures[over])]
        median = statistics.median(ratios)
        verdict = "" if limit is None else f"target ≤ {limit}×: {'met' if median <= limit else 'missed'}; "
        print(f"  {what} / {over}: {median:.2f}× ({verdict}rounds {', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> int:
    args, chosen = parse_args()
    figures: dict[str, list[float]] = {run.name: [] for run in chosen}
    with tempfile.TemporaryDirectory(prefix="fastcluster-ws-bench-") as tmp:
        work = Path(tmp)
        binary = work / "ws_load"
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "ws_load.c")], check=True)
        for round_number in range(1, args.rounds + 1):
            for run in chosen:
                cost, rate = measure(run, args, work, binary)
                figures[run.name].append(cost)
                print(f"round {round_number}  {run.name:39} {cost:8.2f} µs {rate:9.0f}/s", flush=True)
    summary(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
