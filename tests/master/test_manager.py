"""The process manager under real load: rolling reload, scaling, recycling, SIGKILLed and stuck workers,
failed boots, status, metrics, health and the access log."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from fastcluster.control import request
from fastcluster.metrics import parse_metrics
from tests.conftest import free_port, get, read_responses, wait_until
from tests.master.load import Load

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", *args], capture_output=True, text=True,
                          timeout=timeout)


def status(control: str) -> dict:
    """What `status --json` prints, asked on the control socket itself: the tests poll it, and a process per
    question would cost a fifth of a second and a CPU the server under load needs."""
    reply = request(control, {"command": "status"}, timeout=10)
    assert reply["ok"], reply
    return reply["status"]


def serving_pids(control: str) -> dict[int, int]:
    """slot -> pid of the workers taking new connections."""
    return {row["slot"]: row["pid"] for row in status(control)["workers"] if row["state"] == "serving"}


def all_serving(control: str, workers: int) -> dict[int, int]:
    """serving_pids once all the workers have told the master they serve (a moment after they answer)."""
    assert wait_until(lambda: len(serving_pids(control)) == workers, 5)
    return serving_pids(control)


def test_rolling_reload_under_load_fails_no_request(serve, control):
    server = serve("--control", control, workers=2)
    before = all_serving(control, 2)
    with Load(server.port) as load:
        time.sleep(0.7)
        result = cli("reload", "--control", control)
        assert result.returncode == 0 and result.stdout.strip() == "reloaded", result
        after = serving_pids(control)
        assert len(after) == 2 and not set(after.values()) & set(before.values())
        server.signal(signal.SIGHUP)  # the same through the signal
        assert wait_until(lambda: status(control)["master"]["reloads"] == 2, 5)
        time.sleep(0.3)  # and served by the new workers
    failed, counts = load.failed()
    assert counts["requests"] > 1000
    assert failed == 0, counts["output"]


def test_scale_up_and_down_under_load_fails_no_request(serve, control):
    server = serve("--control", control, workers=2)
    with Load(server.port) as load:
        time.sleep(0.5)
        assert cli("scale", "4", "--control", control).returncode == 0
        rows = status(control)["workers"]
        assert len(rows) == 4 and {row["state"] for row in rows} == {"serving"}
        cpus = sorted(os.sched_getaffinity(0))
        assert sorted(row["cpu"] for row in rows) == sorted(cpus * (4 // len(cpus)) + cpus[:4 % len(cpus)])
        time.sleep(0.5)
        assert cli("scale", "1", "--control", control).returncode == 0
        assert wait_until(lambda: len(status(control)["workers"]) == 1, 5)
        server.signal(signal.SIGTTIN)
        assert wait_until(lambda: len(serving_pids(control)) == 2, 5)
        time.sleep(0.3)
        assert cli("scale", "-1", "--control", control).returncode == 0
        assert wait_until(lambda: len(status(control)["workers"]) == 1, 5)
        time.sleep(0.3)  # and served by the one left
    failed, counts = load.failed()
    assert counts["requests"] > 1000
    assert failed == 0, counts["output"]
    assert "slot 1 removed" in server.read_output() or server.proc.poll() is None


def test_scale_down_serves_connections_queued_on_the_removed_slot(serve, control):
    server = serve("--control", control, workers=2)
    victim = all_serving(control, 2)[1]
    os.kill(victim, signal.SIGSTOP)  # slot 1's connections now wait in its socket's queue
    try:
        clients = [server.connect() for _ in range(40)]
        for sock in clients:
            sock.sendall(GET)
        time.sleep(0.3)
        ready, _, _ = select.select(clients, [], [], 0)
        assert 0 < len(clients) - len(ready) < len(clients), "connections should land on both slots"
        scaler = subprocess.Popen([sys.executable, "-m", "fastcluster", "scale", "1", "--control", control])
        time.sleep(0.5)
        # Out of rotation: new connections all go to slot 0, though slot 1 still has a queue.
        for _ in range(20):
            assert get(server.port)[0] == 200
    finally:
        os.kill(victim, signal.SIGCONT)
    for sock in clients:
        with sock:
            assert read_responses(sock, 1)[0][0] == 200  # none was reset when slot 1 closed
    assert scaler.wait(10) == 0
    assert [row["slot"] for row in status(control)["workers"]] == [0]


def test_recycling_after_max_requests_under_load(serve, control):
    server = serve("--control", control, "--max-requests", "3000", "--max-requests-jitter", "500", workers=2)
    first = set(all_serving(control, 2).values())
    failed, counts = Load(server.port, 1).failed()  # tens of thousands of requests here
    assert counts["requests"] > 8000, counts["output"]
    assert failed == 0, counts["output"]
    assert not first & set(serving_pids(control).values())
    assert status(control)["master"]["restarts"] == 0  # a recycled worker is replaced, not restarted
    server.stop()
    recycled = re.findall(r"recycling worker \d \(pid \d+\): served (\d+) requests", server.output)
    served = [int(count) for count in recycled]
    assert served and min(served) >= 3000, server.output


def test_recycling_over_max_memory(serve, control):
    server = serve("--control", control, "--max-memory", "1")  # every worker is over 1 MiB
    [first] = server.workers()
    assert wait_until(lambda: server.workers() and first not in server.workers(), 5)
    assert get(server.port)[0] == 200
    server.stop()
    assert re.search(r"recycling worker 0 \(pid \d+\): RSS \d+ MiB over --max-memory 1", server.output)


def test_sigkill_of_random_workers_costs_no_new_connection(serve, control):
    server = serve("--control", control, workers=2)
    kills = 0
    deadline = time.monotonic() + 5
    refill_worst = 0.0
    with Load(server.port, close=True) as load:
        while kills < 15 and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = server.workers()
            if not pids:
                continue
            os.kill(random.choice(pids), signal.SIGKILL)
            killed = time.monotonic()
            kills += 1
            assert wait_until(lambda: len(server.workers()) == 2, 1.0), "slot not refilled within a second"
            refill_worst = max(refill_worst, time.monotonic() - killed)
        time.sleep(0.1)  # and served by the last one
    counts = load.result()
    assert kills >= 15
    assert counts["connect"] == 0, counts["output"]
    assert counts["requests"] > 1000
    assert refill_worst < 1.0


def test_reload_whose_new_workers_cannot_start_keeps_the_old_ones(serve, control, tmp_path):
    page = tmp_path / "page.txt"
    page.write_text("version 1")
    server = serve("--control", control, "--response-file", str(page), workers=2)
    before = all_serving(control, 2)
    with Load(server.port) as load:
        time.sleep(0.5)
        page.unlink()
        result = cli("reload", "--control", control)
        assert result.returncode == 1
        assert "could not start" in result.stderr and "cannot read" in result.stderr, result.stderr
        assert serving_pids(control) == before
        time.sleep(0.3)  # and still served by them
    failed, counts = load.failed()
    assert failed == 0, counts["output"]
    assert get(server.port) == (200, b"version 1")
    page.write_text("version 2")
    assert cli("reload", "--control", control).returncode == 0
    assert get(server.port) == (200, b"version 2")
    server.stop()
    assert "reload aborted: the new worker 0 could not start (--response-file: cannot read" in server.output


APP_VERSION = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


def test_reload_with_an_app_whose_new_version_fails_to_import(serve, control, tmp_path):
    module = tmp_path / "versioned.py"
    module.write_text(APP_VERSION.format(version="app 1"))
    server = serve("versioned:app", "--app-dir", str(tmp_path), "--control", control, workers=2)
    server.tracebacks_expected = True  # the aborted reload shows the app's traceback
    before = all_serving(control, 2)
    with Load(server.port) as load:
        time.sleep(0.5)
        module.write_text("import no_such_dependency\n" + APP_VERSION.format(version="app 2"))
        result = cli("reload", "--control", control)
        assert result.returncode == 1
        assert "could not start" in result.stderr and "no_such_dependency" in result.stderr, result.stderr
        assert serving_pids(control) == before
        time.sleep(0.3)  # and still served by them
    failed, counts = load.failed()
    assert failed == 0, counts["output"]
    assert get(server.port) == (200, b"app 1")
    module.write_text(APP_VERSION.format(version="app 2"))
    assert cli("reload", "--control", control).returncode == 0
    assert get(server.port) == (200, b"app 2")


def test_reload_retries_a_slot_whose_worker_could_not_start(serve, control, tmp_path):
    page = tmp_path / "page.txt"
    page.write_text("v1")
    server = serve("--control", control, "--response-file", str(page), workers=2)
    all_serving(control, 2)
    page.unlink()
    os.kill(serving_pids(control)[1], signal.SIGKILL)  # its replacement cannot read the file
    assert wait_until(lambda: status(control)["slots"]["1"]["boot_failed"], 5)
    assert list(serving_pids(control)) == [0]
    page.write_text("v2")
    assert cli("reload", "--control", control).returncode == 0
    assert wait_until(lambda: sorted(serving_pids(control)) == [0, 1], 5)
    assert {get(server.port)[1] for _ in range(10)} == {b"v2"}


MARKED = """
import os

if os.path.exists({marker!r}):
    raise RuntimeError("the marker file exists")


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
"""


def test_a_slot_whose_worker_cannot_start_is_shown_failed_and_retried(serve, control, tmp_path):
    marker = tmp_path / "broken"
    (tmp_path / "marked.py").write_text(MARKED.format(marker=str(marker)))
    admin = free_port()
    server = serve("marked:app", "--app-dir", str(tmp_path), "--control", control, "--admin-port", str(admin),
                   workers=2)
    server.tracebacks_expected = True  # the master logs the app's traceback
    all_serving(control, 2)
    marker.touch()
    os.kill(serving_pids(control)[1], signal.SIGKILL)  # its replacement cannot import the app
    assert wait_until(lambda: status(control)["slots"]["1"]["boot_failures"] >= 2, 5)  # retried, not dropped
    reason = "importing 'marked' failed: RuntimeError: the marker file exists"
    assert status(control)["slots"]["1"]["boot_failed"] == reason
    table = cli("status", "--control", control).stdout
    assert re.search(r"^\s*1\s+-\s+\S+\s+failed\b", table, re.M), table
    assert f"slot 1 failed: {reason}" in table, table
    assert get(admin, "/healthz") == (200, f"degraded\nworker 1 could not start: {reason}\n".encode())
    samples = parse_metrics(get(admin, "/metrics")[1].decode())
    assert samples['fastcluster_worker_failed{slot="1"}'] == 1
    assert samples['fastcluster_worker_failed{slot="0"}'] == 0
    assert samples['fastcluster_worker_boot_failures_total{slot="1"}'] >= 2
    assert {get(server.port) for _ in range(10)} == {(200, b"ok")}  # new connections avoid the failed slot
    os.kill(serving_pids(control)[0], signal.SIGKILL)  # now no worker can start: not healthy
    assert wait_until(lambda: get(admin, "/healthz")[0] == 503, 5)
    marker.unlink()
    # Each slot comes back at its next try (the backoff doubles from 1 s up to 30 s).
    assert wait_until(lambda: sorted(serving_pids(control)) == [0, 1], 35)
    assert get(admin, "/healthz") == (200, b"ok\n")
    assert get(server.port) == (200, b"ok")
    server.stop()
    assert server.output.count("Traceback") == 1, server.output
    assert "worker 1 could not start (importing 'marked' failed" in server.output


def test_stuck_worker_is_killed_by_the_heartbeat_and_the_log_names_its_request(serve, control):
    server = serve("--control", control, "--timeout", "1.5")
    assert get(server.port, "/where/it/hangs?x=1")[0] == 200
    [stuck] = server.workers()
    os.kill(stuck, signal.SIGSTOP)  # as good as an app stuck in a loop: no more heartbeats
    stopped = time.monotonic()
    assert wait_until(lambda: server.workers() and stuck not in server.workers(), 5)
    assert 1.5 <= time.monotonic() - stopped < 4.5
    wait_until(lambda: get(server.port)[0] == 200, 3)
    server.stop()
    assert "sent no heartbeat" in server.output
    assert "it was on request: GET /where/it/hangs?x=1" in server.output


def test_status_table_json_pidfile_and_stop(serve, control, tmp_path):
    pidfile = tmp_path / "server.pid"
    server = serve("--control", control, "--pidfile", str(pidfile), workers=2)
    assert pidfile.read_text().strip() == str(server.pid)
    for _ in range(5):
        get(server.port)
    table = cli("status", "--control", control)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"fastcluster master {server.pid} serving")
    assert lines[1].split() == ["SLOT", "PID", "CPU", "STATE", "UPTIME", "RESTARTS", "REQUESTS", "REQ/S",
                                "CONNS", "RSS"]
    assert sorted(int(line.split()[1]) for line in lines[2:]) == sorted(server.workers())
    printed = cli("status", "--json", "--control", control)
    assert printed.returncode == 0, printed.stderr
    snapshot = json.loads(printed.stdout)
    assert snapshot["totals"]["requests"] >= 5
    assert {row["state"] for row in snapshot["workers"]} == {"serving"}
    assert all(row["rss"] > 0 for row in snapshot["workers"]) or not snapshot["master"]["uptime"] > 1.5
    assert cli("stop", "--control", control).returncode == 0
    assert server.proc.wait(10) == 0
    assert not pidfile.exists() and not os.path.exists(control)
    gone = cli("status", "--control", control)
    assert gone.returncode == 1 and gone.stderr.startswith("fastcluster: error: no server")


def test_metrics_and_healthz(serve, control):
    admin = free_port()
    server = serve("--control", control, "--admin-port", str(admin), "--graceful-timeout", "5", workers=2)
    before = parse_metrics(get(admin, "/metrics")[1].decode())["fastcluster_server_requests_total"]
    for path in ("/", "/json", "/", "/nothing"):
        assert get(server.port, path)[0] == 200
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        assert read_responses(sock, 1)[0][0] == 400
    assert get(admin, "/healthz") == (200, b"ok\n")
    status_code, body = get(admin, "/metrics")
    assert status_code == 200
    samples = parse_metrics(body.decode())
    total = before + 4  # the readiness probe of the test harness made the requests before
    assert samples["fastcluster_server_requests_total"] == total
    assert samples['fastcluster_server_responses_total{class="2xx"}'] == total
    assert samples['fastcluster_server_responses_total{class="4xx"}'] == 1
    assert sum(samples[f'fastcluster_requests_total{{slot="{slot}"}}'] for slot in (0, 1)) == total
    assert samples['fastcluster_request_duration_seconds_bucket{le="+Inf"}'] == total
    assert samples["fastcluster_request_duration_seconds_count"] == total
    assert samples["fastcluster_workers"] == 2 and samples["fastcluster_uptime_seconds"] > 0
    assert get(server.port, "/")[0] == 200
    assert get(admin, "/nope")[0] == 404
    # A request in flight keeps the server draining; /healthz says so.
    with server.connect() as busy:
        busy.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        assert wait_until(lambda: get(admin, "/healthz")[0] == 503, 3)
        busy.sendall(b"world")
        assert read_responses(busy, 1)[0][0] == 200
    assert server.proc.wait(10) == 0


@pytest.mark.parametrize("log_format", ["common", "combined", "json"])
def test_access_log_formats(serve, tmp_path, log_format):
    path = tmp_path / "access.log"
    server = serve("--access-log", str(path), "--access-log-format", log_format)
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    client.request("GET", "/json?status=200", headers={"User-Agent": 'agent "quoted"', "Referer": "http://r/"})
    body = client.getresponse().read()
    client.close()
    server.stop()  # which writes what the worker buffered
    [line] = [line for line in path.read_text().splitlines() if "/json" in line]
    if log_format == "json":
        entry = json.loads(line)
        assert (entry["method"], entry["target"], entry["status"], entry["user_agent"], entry["bytes"]) == (
            "GET", "/json?status=200", 200, 'agent "quoted"', len(body))
        assert 0 <= entry["duration"] < 1
    else:
        assert line.startswith("127.0.0.1 - - [")
        assert f'"GET /json?status=200 HTTP/1.1" 200 {len(body)}' in line
        if log_format == "combined":
            assert line.endswith('"http://r/" "agent \\x22quoted\\x22"')


def test_access_log_is_written_each_second_and_reopened_on_usr1(serve, tmp_path):
    """The worker writes its buffered lines at its once-a-second tick, then reopens the file if USR1 asked:
    a log rotated by renaming keeps the lines of before the signal, and the new file gets the next ones."""
    path, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    server = serve("--access-log", str(path))
    assert get(server.port, "/before")[0] == 200
    path.rename(rotated)
    server.signal(signal.SIGUSR1)
    assert wait_until(path.exists, 3)  # reopened (made anew) at the worker's next tick
    assert "/before" in rotated.read_text()  # written while the server runs, to the file it had open
    assert get(server.port, "/after")[0] == 200
    assert wait_until(lambda: "/after" in path.read_text(), 3)
    assert "/after" not in rotated.read_text()


def test_access_log_custom_format_logs_the_atoms_asked_for(serve, tmp_path):
    path = tmp_path / "access.log"
    log_format = ("%(h)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(D)s|%(L)s|%(p)s"
                  "|%({X-Request-Id}i)s|%(a)s|100%%")
    server = serve("--access-log", str(path), "--access-log-format", log_format)
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    client.request("GET", "/bytes/1000?status=200", headers={"X-Request-Id": "abc-1"})
    assert len(client.getresponse().read()) == 1000
    client.request("HEAD", "/json")
    client.getresponse().read()
    client.close()
    [pid] = server.workers()
    server.stop()  # which writes what the worker buffered
    lines = [line.split("|") for line in path.read_text().splitlines()]
    by_path = {fields[2]: fields for fields in lines}
    assert by_path["/bytes/1000"][:8] == [
        "127.0.0.1", "GET", "/bytes/1000", "status=200", "HTTP/1.1", "200", "1000", "1000"]
    assert by_path["/bytes/1000"][10:] == [f"<{pid}>", "abc-1", "-", "100%"]
    assert by_path["/json"][1] == "HEAD" and by_path["/json"][6:8] == ["0", "-"]  # a HEAD answer has no body


def test_access_log_response_headers_of_built_in_answers(serve, tmp_path):
    path = tmp_path / "access.log"
    server = serve("--access-log", str(path), "--access-log-format", "%(U)s %({content-type}o)s %({X-Tag}o)s",
                   "--response-header", "X-Tag: blue")
    for target in ("/", "/json", "/bytes/200000", "/delay/50"):  # prebuilt answers and producers
        assert get(server.port, target)[0] == 200
    server.stop()  # which writes what the worker buffered
    lines = dict(line.split(" ", 1) for line in path.read_text().splitlines())
    assert lines["/"] == "text/plain blue" and lines["/json"] == "application/json -", lines
    assert lines["/bytes/200000"] != "- -" and lines["/delay/50"] != "- -", lines


@pytest.mark.parametrize("args", [
    ["serve", "--access-log-format", "%(h)s %(Z)s"],
    ["serve", "--access-log-format", "%({Content-Type}x)s"],
    ["serve", "--max-requests", "0"],
    ["serve", "--max-requests-jitter", "-3"],
    ["serve", "--access-log-format", "apache"],
    ["serve", "--timeout", "0"],
    ["serve", "--timeout", "1"],
    ["serve", "--admin-port", "70000"],
    ["scale", "zero"],
    ["scale", "0"],
    ["status", "--control", "/x", "--port", "80"],
])
def test_bad_manager_flags_give_one_line_and_status_2(args):
    result = cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcluster: error: "), result.stderr


def test_a_second_server_on_the_same_control_socket_is_refused(serve, control):
    serve("--control", control)
    result = cli("serve", "--port", str(free_port()), "--control", control, timeout=10)
    assert result.returncode == 2
    assert "another server is running on control socket" in result.stderr
