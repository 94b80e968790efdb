"""/metrics: a master snapshot in the Prometheus text exposition format (version 0.0.4).

Per-slot counters add up the slot's successive workers, so a reload or a restart never makes them go
down; the server_* families add up every slot, including slots removed by scaling down."""

from __future__ import annotations

from fastcluster.core.stats import LATENCY_BOUNDS

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def render_metrics(snapshot: dict) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP fastcluster_{name} {help_text}")
        lines.append(f"# TYPE fastcluster_{name} {kind}")
        for labels, value in samples:
            lines.append(f"fastcluster_{name}{labels} {format_value(value)}")

    slots = snapshot["slots"]
    totals = snapshot["totals"]
    master = snapshot["master"]

    def per_slot(key: str) -> list[tuple[str, float]]:
        return [(f'{{slot="{index}"}}', values.get(key, 0)) for index, values in sorted(slots.items())]

    family("requests_total", "counter", "Requests answered, per slot.", per_slot("requests"))
    family("responses_total", "counter", "Responses by status class, per slot.",
           [(f'{{slot="{index}",class="{name}"}}', count)
            for index, values in sorted(slots.items())
            for name, count in zip(CLASSES, values.get("status_classes") or [0] * 5)])
    family("received_bytes_total", "counter", "Bytes received, per slot.", per_slot("bytes_in"))
    family("sent_bytes_total", "counter", "Bytes sent, per slot.", per_slot("bytes_out"))
    family("connections_total", "counter", "Connections accepted, per slot.", per_slot("connections_total"))
    family("client_errors_total", "counter", "Requests refused as malformed or over a limit, per slot.",
           per_slot("client_errors"))
    family("open_connections", "gauge", "Connections open now, per slot.", per_slot("connections_open"))
    family("open_websockets", "gauge", "WebSockets open now, per slot.", per_slot("websockets_open"))
    family("websocket_messages_total", "counter", "WebSocket messages received and sent, per slot.",
           per_slot("websocket_messages"))
    family("worker_restarts_total", "counter", "Workers of the slot that died and were restarted.",
           per_slot("restarts"))
    family("worker_failed", "gauge", "1 while the slot's worker cannot start (it is retried with backoff).",
           [(f'{{slot="{index}"}}', int(bool(values.get("boot_failed"))))
            for index, values in sorted(slots.items())])
    family("worker_boot_failures_total", "counter", "Workers of the slot that could not start.",
           per_slot("boot_failures"))
    family("worker_uptime_seconds", "gauge", "Age of each worker process.",
           [(f'{{slot="{row["slot"]}",pid="{row["pid"]}",state="{row["state"]}"}}', row["uptime"])
            for row in snapshot["workers"]])
    family("worker_rss_bytes", "gauge", "Resident memory of each worker process.",
           [(f'{{slot="{row["slot"]}",pid="{row["pid"]}"}}', row["rss"]) for row in snapshot["workers"]])

    family("server_requests_total", "counter", "Requests answered by all workers.",
           [("", totals.get("requests", 0))])
    family("server_responses_total", "counter", "Responses by status class, all workers.",
           [(f'{{class="{name}"}}', count)
            for name, count in zip(CLASSES, totals.get("status_classes") or [0] * 5)])
    family("server_received_bytes_total", "counter", "Bytes received by all workers.",
           [("", totals.get("bytes_in", 0))])
    family("server_sent_bytes_total", "counter", "Bytes sent by all workers.",
           [("", totals.get("bytes_out", 0))])
    family("server_connections_total", "counter", "Connections accepted by all workers.",
           [("", totals.get("connections_total", 0))])

    lines.append("# HELP fastcluster_request_duration_seconds Time from the read that began a request to "
                 "its answer, all workers.")
    lines.append("# TYPE fastcluster_request_duration_seconds histogram")
    buckets = totals.get("latency") or [0] * (len(LATENCY_BOUNDS) + 1)
    running = 0
    for bound, count in zip((*LATENCY_BOUNDS, float("inf")), buckets):
        running += count
        le = "+Inf" if bound == float("inf") else format_value(bound)
        lines.append(f'fastcluster_request_duration_seconds_bucket{{le="{le}"}} {running}')
    lines.append(f"fastcluster_request_duration_seconds_sum {format_value(totals.get('latency_sum', 0.0))}")
    lines.append(f"fastcluster_request_duration_seconds_count {running}")

    family("workers", "gauge", "Worker slots wanted.", [("", master["workers"])])
    family("worker_processes", "gauge", "Worker processes alive, by state.",
           [(f'{{state="{state}"}}', sum(1 for row in snapshot["workers"] if row["state"] == state))
            for state in ("booting", "serving", "draining", "removing")])
    family("restarts_total", "counter", "Workers that died and were restarted, all slots.",
           [("", master["restarts"])])
    family("reloads_total", "counter", "Rolling reloads completed.", [("", master["reloads"])])
    family("uptime_seconds", "gauge", "Age of the master process.", [("", master["uptime"])])
    family("draining", "gauge", "1 while the server is stopping.", [("", int(master["state"] == "draining"))])
    return "\n".join(lines) + "\n"


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def parse_metrics(text: str) -> dict[str, float]:
    """Samples by `name{labels}` (for tests and scripts that read /metrics back)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
