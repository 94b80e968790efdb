"""Smoke runs of the benchmark suite (one scenario, one second; two rounds of it), the median of rounds,
the app-alone driver and the answer check."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from run import median_row  # noqa: E402
from servers import ITEM, ITEM_PATH, Scenario  # noqa: E402


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_one_scenario_for_one_second(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scenarios", "plaintext",
                           "--servers", "fastcluster,floor", "--duration", "1", "--warmup", "0",
                           "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[plaintext] fastcluster" in done.stderr  # the progress line
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["machine"]["cores"] >= 1
    fastcluster = next(row for row in results["results"] if row["server"] == "fastcluster")
    assert fastcluster["requests"] > 1000 and fastcluster["errors"] == 0, fastcluster
    assert 0 < fastcluster["us_per_request"] < 1000
    table = (tmp_path / "results.md").read_text()
    assert "## plaintext" in table and "| fastcluster |" in table
    if (ROOT.parent / "shared" / "bench" / "ref_epoll.c").exists():
        assert "| floor (C epoll) |" in table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


def test_unknown_scenario_is_refused():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scenarios", "nope"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown scenarios: nope" in done.stderr


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_framework_scenario_has_the_app_alone_the_server_share_and_the_floor(tmp_path):
    pytest.importorskip("flask")
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scenarios", "flask",
                           "--servers", "fastcluster,floor", "--duration", "1", "--warmup", "0",
                           "--no-charts", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    alone = results["app_alone"]["flask"]
    assert alone["calls"] > 100 and alone["us_per_call"] > 0
    row = next(row for row in results["results"] if row["server"] == "fastcluster")
    assert row["connections"] == 16 and row["requests"] > 100 and row["errors"] == 0
    assert row["app_alone_us"] == alone["us_per_call"]
    assert row["server_share_us"] == pytest.approx(row["us_per_request"] - alone["us_per_call"], abs=0.01)
    table = (tmp_path / "results.md").read_text()
    assert "## flask" in table and "| app alone µs | share µs | vs app alone | vs best peer |" in table
    assert f"{alone['us_per_call']:.2f} µs per call" in table
    over_alone = row["us_per_request"] / alone["us_per_call"]
    assert f"| fastcluster | {row['us_per_request']:.2f} | {alone['us_per_call']:.2f} | " \
           f"{row['server_share_us']:.2f} | {over_alone:.2f}× | – |" in table  # the floor is not a peer
    # the floor answered the scenario's JSON (a wrong answer is a skipped row) under the same load
    floor = next(row for row in results["results"] if row["server"] == "floor (C epoll)")
    assert floor["requests"] > 100 and floor["errors"] == 0, floor
    assert "Ratios are against the best peer (none measured)." in table


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_rounds_report_each_median_with_its_spread_and_the_median_of_each_rounds_ratio(tmp_path):
    pytest.importorskip("gunicorn")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scenarios", "wsgi",
                           "--servers", "fastcluster,gunicorn", "--rounds", "2", "--duration", "1",
                           "--warmup", "0", "--no-charts", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "[wsgi] gunicorn ... (round 2 of 2)" in done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["rounds"] == 2
    alone = results["app_alone"]["wsgi"]
    per_call = [one["us_per_call"] for one in alone["each_round"]]
    assert len(per_call) == 2
    assert alone["us_per_call"] == pytest.approx(statistics.median(per_call), abs=0.001)
    assert (alone["us_per_call_min"], alone["us_per_call_max"]) == (min(per_call), max(per_call))
    assert alone["calls"] == sum(one["calls"] for one in alone["each_round"])
    table = (tmp_path / "results.md").read_text()
    assert "Each figure is the median of 2 rounds" in table.splitlines()[2]  # the header line
    assert f"costs {alone['us_per_call']:.2f} ({min(per_call):.2f}–{max(per_call):.2f}) µs per call" in table
    rows = {row["server"]: row for row in results["results"]}
    for row in rows.values():
        figures = [one["us_per_request"] for one in row["each_round"]]
        assert len(figures) == 2
        assert row["us_per_request"] == pytest.approx(statistics.median(figures), abs=0.001)
        assert (row["us_per_request_min"], row["us_per_request_max"]) == (min(figures), max(figures))
        assert row["requests"] == sum(one["requests"] for one in row["each_round"]) and row["errors"] == 0
        assert row["server_share_us"] == pytest.approx(row["us_per_request"] - alone["us_per_call"], abs=0.01)
        cell = f"{row['us_per_request']:.2f} ({min(figures):.2f}–{max(figures):.2f})"
        assert f"| {row['server']} | {cell} | {alone['us_per_call']:.2f} |" in table
    heads = next(line for line in table.splitlines() if line.startswith("| server |")).split("|")
    fastcluster = next(line for line in table.splitlines() if line.startswith("| fastcluster |")).split("|")

    def paired(figures: list[float], bases: list[float]) -> str:
        ratios = [figure / base for figure, base in zip(figures, bases)]
        return f" {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) "

    ours, theirs = ([one["us_per_request"] for one in rows[name]["each_round"]]
                    for name in ("fastcluster", "gunicorn"))
    assert fastcluster[heads.index(" vs best peer ")] == paired(ours, theirs)
    assert fastcluster[heads.index(" vs app alone ")] == paired(ours, per_call)
    share_vs_best_peer = rows["fastcluster"]["server_share_us"] / rows["gunicorn"]["server_share_us"]
    assert fastcluster[heads.index(" share vs best peer ")] == f" {share_vs_best_peer:.2f}× "
    # the second round runs in the reverse order: the peer first, the app alone last
    order = [line.split("...")[0] for line in done.stderr.split("\x1b[K") if "(round 2 of 2)" in line]
    assert order == ["[wsgi] gunicorn ", "[wsgi] fastcluster ", "[wsgi] the app alone "], order


def test_the_median_row_of_rounds_adds_up_counts_and_keeps_the_worst_worker_spread():
    def round_row(us: float, p99: float | None, errors: int, spread: float) -> dict:
        return {"scenario": "workers-n", "server": "fastcluster", "connections": 64, "requests": 1000,
                "rps": 500, "p50_ms": 1.0, "p99_ms": p99, "errors": errors,
                "error_text": f"Non-2xx or 3xx responses: {errors}" if errors else "", "processes": 3,
                "us_per_request": us, "worker_spread_pct": spread}

    only = round_row(9.0, 2.0, 0, 5.0)
    assert median_row([only]) == only  # one round: the row as it always was
    failed = {"scenario": "workers-n", "server": "fastcluster", "skipped": "failed: did not start listening"}
    row = median_row([round_row(9.0, 2.0, 0, 5.0), round_row(7.0, None, 3, 12.5), failed,
                      round_row(8.0, 4.0, 0, 1.0)])
    assert (row["us_per_request"], row["us_per_request_min"], row["us_per_request_max"]) == (8.0, 7.0, 9.0)
    assert row["p99_ms"] == 3.0  # the median of the rounds that have one
    assert (row["requests"], row["errors"], row["error_text"]) == (3000, 3, "Non-2xx or 3xx responses: 3")
    assert row["worker_spread_pct"] == 12.5
    assert len(row["each_round"]) == 4 and row["each_round"][2] == {"skipped": failed["skipped"]}
    assert median_row([failed, failed]) == failed


@pytest.mark.parametrize("app, interface, framework", [
    ("hello_asgi:app", "asgi", None),
    ("hello_wsgi:app", "wsgi", None),
    ("fastapi_app:app", "asgi", "fastapi"),
    ("flask_app:app", "wsgi", "flask"),
    ("djangoapp.wsgi:application", "wsgi", "django"),
    ("djangoapp.asgi:application", "asgi", "django"),  # its handler waits on receive() for a disconnect
])
def test_app_alone_drives_the_app_and_reports_its_answer(app, interface, framework):
    if framework:
        pytest.importorskip(framework)
    path = "/" if framework is None else ITEM_PATH
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "app_alone.py"), app, "--interface",
                           interface, "--path", path, "--duration", "0.2", "--warmup", "0.1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["calls"] > 0 and found["us_per_call"] > 0
    if framework is None:
        assert (found["status"], found["body"]) == (200, "Hello, World!")
    else:
        scenario = Scenario("check", path=ITEM_PATH, kind=interface, answer=ITEM)
        assert scenario.wrong_answer(found["status"], found["content_type"], found["body"].encode()) is None


def test_a_wrong_framework_answer_is_refused():
    scenario = Scenario("check", path=ITEM_PATH, kind="asgi", answer=ITEM)
    right = json.dumps(ITEM).encode()
    assert scenario.wrong_answer(200, "application/json", right) is None
    assert scenario.wrong_answer(500, "application/json", right) == "answered 500, not 200"
    assert "not application/json" in scenario.wrong_answer(200, "text/html", right)
    no_query = json.dumps({**ITEM, "q": None}).encode()
    assert "'q': None" in scenario.wrong_answer(200, "application/json", no_query)
    assert "not {" in scenario.wrong_answer(200, "application/json", b"<html>")


def test_the_chart_has_a_title_with_the_date_and_a_legend():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from report import draw

    rows = [{"scenario": "flask", "server": "fastcluster", "us_per_request": 90.0, "app_alone_us": 60.0},
            {"scenario": "flask", "server": "granian", "us_per_request": 95.0, "app_alone_us": 60.0},
            {"scenario": "plaintext", "server": "nginx", "us_per_request": 5.0}]
    figure = draw(plt, rows, {"date": "2026-01-02 03:04 UTC", "cores": 2, "cpu": "Test CPU"})
    assert "2026-01-02 03:04 UTC" in figure._suptitle.get_text()
    [legend] = figure.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["fastcluster", "nginx", "other servers", "the app alone"]
    plt.close(figure)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_ws_load_counts_echoes_and_an_echo_that_differs_is_an_error(serve, tmp_path):
    binary = tmp_path / "ws_load"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(ROOT / "benchmarks" / "ws_load.c")], check=True)
    server = serve()

    def load(path: str) -> list[str]:
        done = subprocess.run([str(binary), str(server.port), path, "4", "0.5"], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    fields = load("/ws")
    assert fields[0] == "messages" and int(fields[1]) > 10 and fields[2:4] == ["errors", "0"]
    fields = load("/ws?size=3")  # three pattern bytes come back instead of the message
    assert fields[:4] == ["messages", "0", "errors", "4"]


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("gcc") is None, reason="needs wrk and gcc")
def test_websocket_benchmark_compares_ws_with_http():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "websocket.py"), "--rounds", "1",
                           "--duration", "1", "--warmup", "0", "--runs", "fastcluster /ws,fastcluster HTTP"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "round 1  fastcluster /ws" in done.stdout and "round 1  fastcluster HTTP" in done.stdout
    assert "fastcluster /ws / fastcluster HTTP: " in done.stdout and "target ≤ 1.2×" in done.stdout
