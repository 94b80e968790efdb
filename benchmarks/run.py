"""Compare fastcluster with the C floor, nginx, uvicorn, granian and gunicorn, scenario by scenario.

    python benchmarks/run.py [--scenarios a,b] [--servers a,b] [--duration S] [--warmup S] [--rounds N]
                             [--out DIR] [--install]

Each server runs pinned to CPU 1 (one worker) and wrk to CPU 0; the figure that matters is the server's
CPU time per request, summed over its whole process tree. The scenarios that run an app also measure the
app alone, with no server (app_alone.py), so the server's own share shows. With --rounds N each scenario
runs every server once per round, in turn (every other round in the reverse order), N rounds; each figure
reported is the median of its rounds and each ratio the median of the rounds' own ratios.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import PIPELINE_LUA, cpu_seconds, process_tree, run_wrk  # noqa: E402
from report import machine_description, write_reports  # noqa: E402
from servers import ITEM, ITEM_PATH, PEERS, Scenario, prepare_files  # noqa: E402

SERVER_CPU, WRK_CPU = 1, 0
ALONE = ""  # in a round's order of runs: the app alone
SCENARIOS = {
    "plaintext": Scenario("plaintext"),
    "pipelined": Scenario("pipelined", pipelined=True),
    "json": Scenario("json", path="/json"),
    "body-1k": Scenario("body-1k", body_bytes=1024),
    "body-64k": Scenario("body-64k", body_bytes=65536),
    "body-1m": Scenario("body-1m", body_bytes=1 << 20),
    "static": Scenario("static", path="/index.html", kind="static"),
    "asgi": Scenario("asgi", kind="asgi", app="hello_asgi:app"),
    "wsgi": Scenario("wsgi", kind="wsgi", app="hello_wsgi:app"),
    "workers-1": Scenario("workers-1", kind="workers", workers=1),
    "workers-n": Scenario("workers-n", kind="workers", workers=len(os.sched_getaffinity(0))),
}
# real frameworks: the same request and answer in each, and as many connections as a real app would see
for name, kind, app, framework in (("fastapi", "asgi", "fastapi_app:app", "fastapi"),
                                   ("django-wsgi", "wsgi", "djangoapp.wsgi:application", "django"),
                                   ("django-asgi", "asgi", "djangoapp.asgi:application", "django"),
                                   ("flask", "wsgi", "flask_app:app", "flask")):
    SCENARIOS[name] = Scenario(name, path=ITEM_PATH, kind=kind, app=app, framework=framework, connections=16,
                               answer=ITEM)


def progress(text: str) -> None:
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("did not start listening")


def wait_until_answering(port: int, scenario: Scenario, proc: subprocess.Popen, timeout: float = 15) -> None:
    """Wait for the server to listen, and refuse to measure one whose answer is not the scenario's 200."""
    path = scenario.path
    wait_listening(port, proc, timeout)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise RuntimeError(f"GET {path} failed: {exc}") from exc
    finally:
        connection.close()
    wrong = scenario.wrong_answer(response.status, response.getheader("content-type", ""), body)
    if wrong:
        raise RuntimeError(f"GET {path} {wrong}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT if "nginx" in proc.args[0] else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(peer_name: str, scenario: Scenario, args: argparse.Namespace, work: Path, script: Path) -> dict:
    peer = PEERS[peer_name]
    row = {"scenario": scenario.name, "server": peer.name}
    launch = peer.launch(scenario, port := free_port(), work)
    if launch is None:
        return {}
    if isinstance(launch, str):
        return {**row, "skipped": launch}
    command = launch.command
    if scenario.kind != "workers":
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    proc = subprocess.Popen(command, env={**os.environ, **launch.env}, cwd=launch.cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until_answering(port, scenario, proc)
        url = f"http://127.0.0.1:{port}{scenario.path}"
        pipeline = script if scenario.pipelined else None
        connections = args.connections or scenario.connections
        if args.warmup:
            run_wrk(url, args.warmup, connections, pipeline, WRK_CPU)
        pids = process_tree(proc.pid)
        before = {pid: cpu_seconds([pid]) for pid in pids}
        result = run_wrk(url, args.duration, connections, pipeline, WRK_CPU)
        used_by = {pid: cpu_seconds([pid]) - before.get(pid, 0.0) for pid in process_tree(proc.pid)}
        used = sum(used_by.values())
        if scenario.kind == "workers" and scenario.workers > 1:
            row["worker_spread_pct"] = spread(used_by, proc.pid)
        row.update(connections=connections, requests=result.requests, rps=round(result.rps),
                   p50_ms=result.p50_ms, p99_ms=result.p99_ms, errors=result.errors,
                   error_text=result.error_text, processes=len(pids),
                   us_per_request=round(used * 1e6 / max(1, result.requests), 3))
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        said = proc.stderr.read().decode(errors="replace")[-300:].strip() if proc.poll() is not None else ""
        row["skipped"] = f"failed: {exc}" + (f" ({said})" if said else "")
    finally:
        stop(proc)
    return row


def measure_app_alone(scenario: Scenario, duration: float, warmup: float) -> dict:
    """The app's own CPU µs per call with no server, pinned to the servers' CPU; or why it failed."""
    command = ["taskset", "-c", str(SERVER_CPU), sys.executable, str(Path(__file__).resolve().parent /
               "app_alone.py"), scenario.app, "--interface", scenario.kind, "--path", scenario.path,
               "--duration", str(duration), "--warmup", str(warmup)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"}
    found = json.loads(done.stdout)
    wrong = scenario.wrong_answer(found["status"], found["content_type"], found["body"].encode())
    if wrong:
        return {"failed": f"the app {wrong}"}
    return {"us_per_call": found["us_per_call"], "calls": found["calls"]}


def median_row(rounds: list[dict]) -> dict:
    """One server's rounds in a scenario as one row: the median of each figure, µs/req's min and max beside
    its median, the requests and errors of every round added up, the largest worker spread, and each
    round's own row. A single round, or rounds none of which was measured, stay as they are."""
    measured = [found for found in rounds if "us_per_request" in found]
    if len(rounds) == 1 or not measured:
        return rounds[0]

    def median(name: str) -> float | None:
        values = [found[name] for found in measured if found[name] is not None]  # a percentile may be None
        return round(statistics.median(values), 3) if values else None

    texts = dict.fromkeys(found["error_text"] for found in measured if found["error_text"])
    row = {**measured[0], "requests": sum(found["requests"] for found in measured),
           "rps": round(median("rps")), "p50_ms": median("p50_ms"), "p99_ms": median("p99_ms"),
           "errors": sum(found["errors"] for found in measured), "error_text": "; ".join(texts),
           **median_and_spread("us_per_request", [found["us_per_request"] for found in measured])}
    if "worker_spread_pct" in row:  # the note says every worker stayed within it: so in every round
        row["worker_spread_pct"] = max(found["worker_spread_pct"] for found in measured)
    row["each_round"] = [{name: value for name, value in found.items() if name not in ("scenario", "server")}
                         for found in rounds]
    return row


def median_app_alone(rounds: list[dict]) -> dict:
    """The app alone over its rounds: the median µs per call with its min and max, the calls of every round
    added up, and each round's figures; one round, or rounds that all failed, stay as they are."""
    measured = [alone for alone in rounds if "us_per_call" in alone]
    if len(rounds) == 1 or not measured:
        return rounds[0]
    return {**median_and_spread("us_per_call", [alone["us_per_call"] for alone in measured]),
            "calls": sum(alone["calls"] for alone in measured), "each_round": rounds}


def median_and_spread(name: str, values: list[float]) -> dict:
    return {name: round(statistics.median(values), 3), f"{name}_min": min(values), f"{name}_max": max(values)}


def spread(used_by: dict[int, float], master: int) -> float:
    """The largest deviation of a worker's CPU time from the workers' mean, in percent."""
    workers = [used for pid, used in used_by.items() if pid != master]
    mean = sum(workers) / len(workers)
    return round(max(abs(used - mean) for used in workers) * 100 / mean, 1) if mean else 0.0


def install_peers() -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uvicorn", "httptools", "uvloop", "granian",
                    "gunicorn", "matplotlib", "fastapi", "django", "flask"], check=False)
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk", "nginx-light"], check=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, default all")
    parser.add_argument("--servers", default=",".join(PEERS), help="comma-separated, default all")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of the same load before each run, 0 for none (default 1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of every server per scenario, in turn; the median is reported (default 1)")
    parser.add_argument("--connections", type=int, help="wrk connections (default 64; 16 for the frameworks)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--floor-source", type=Path, default=PEERS["floor"].source,
                        help="ref_epoll.c, compiled at run time (default ../shared/bench/ref_epoll.c)")
    parser.add_argument("--install", action="store_true", help="pip/apt-get install missing peers first")
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    for option, known in (("scenarios", SCENARIOS), ("servers", PEERS)):
        names = [name for name in getattr(args, option).split(",") if name]
        unknown = [name for name in names if name not in known]
        if unknown:
            parser.error(f"unknown {option}: {', '.join(unknown)} (known: {', '.join(known)})")
        setattr(args, option, names)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    PEERS["floor"].source = args.floor_source
    if args.install:
        install_peers()
    if shutil.which("wrk") is None:
        print("wrk not found: install it (apt-get install wrk) or pass --install", file=sys.stderr)
        return 2
    rows, skipped, app_alone = [], [], {}
    with tempfile.TemporaryDirectory(prefix="fastcluster-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run as an unprivileged user when it is started as root
        prepare_files(work, [s.body_bytes for s in SCENARIOS.values() if s.body_bytes])
        script = work / "pipeline.lua"
        script.write_text(PIPELINE_LUA)
        for scenario_name in args.scenarios:
            scenario = SCENARIOS[scenario_name]
            if scenario.framework and importlib.util.find_spec(scenario.framework) is None:
                skipped.append(f"{scenario_name}: {scenario.framework} is not installed (use --install)")
                continue
            rounds_of: dict[str, list[dict]] = {}  # a server's rows, a row per round
            for peer_name in args.servers:
                reason = PEERS[peer_name].missing()
                if reason:
                    skipped.append(f"{PEERS[peer_name].name}: {reason}")
                else:
                    rounds_of[peer_name] = []
            alone_rounds: list[dict] = []
            runs = ([ALONE] if scenario.app else []) + list(rounds_of)
            for round_number in range(1, args.rounds + 1):
                in_round = f" (round {round_number} of {args.rounds})" if args.rounds > 1 else ""
                # every other round the other way round, so that no server always runs just after another
                for run_name in runs if round_number % 2 else reversed(runs):
                    if run_name == ALONE:
                        progress(f"[{scenario_name}] the app alone ...{in_round}")
                        alone_rounds.append(measure_app_alone(scenario, args.duration, args.warmup))
                        if "failed" in alone_rounds[-1]:
                            skipped.append(f"app alone in {scenario_name}: {alone_rounds[-1]['failed']}")
                        continue
                    progress(f"[{scenario_name}] {PEERS[run_name].name} ...{in_round}")
                    row = measure(run_name, scenario, args, work, script)
                    if row:
                        rounds_of[run_name].append(row)
                    if "skipped" in row:
                        skipped.append(f"{row['server']} in {scenario_name}: {row['skipped']}")
            if alone_rounds:
                app_alone[scenario_name] = median_app_alone(alone_rounds)
            rows += [median_row(found) for found in rounds_of.values() if found]
    progress("")
    for line in sorted(set(skipped)):
        print(f"skipped {line}", file=sys.stderr)
    command = " ".join(["python benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    written = write_reports(rows, app_alone, args.out, machine_description(), charts=not args.no_charts,
                            command=command, rounds=args.rounds)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
