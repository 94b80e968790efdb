"""HTTPS cost per request: fastcluster's built-in responder and a hello-world ASGI app against nginx, all
with one worker on one CPU, the same ECDSA P-256 certificate, TLS 1.2 and 1.3 offered (wrk takes 1.3, with
OpenSSL's default suite, TLS_AES_256_GCM_SHA384), measured with wrk over keep-alive connections and with a
new connection (a full handshake) per request. Prints the server's CPU time per request (user + system of
its worker processes, from /proc).

    python benchmarks/tls.py [--seconds 4] [--cpu 1] [--client-cpu 0]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def certificate(work: Path) -> tuple[str, str]:
    cert, key = str(work / "cert.pem"), str(work / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "1"],
                   check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(child) for child in handle.read().split()]


def wait_ready(port: int) -> None:
    for _ in range(100):
        done = subprocess.run(["curl", "-sk", f"https://127.0.0.1:{port}/"], capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers https on port {port}")


def fastcluster(port: int, cert: str, key: str, cpu: int, app: str | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "fastcluster", "serve", "--workers", "1", "--cpus", str(cpu),
               "--port", str(port), "--ssl-certfile", cert, "--ssl-keyfile", key]
    if app:
        command += [app, "--app-dir", str(HERE / "apps")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def nginx(port: int, cert: str, key: str, cpu: int, work: Path) -> subprocess.Popen:
    config = work / "nginx.conf"
    config.write_text(f"""worker_processes 1;
worker_cpu_affinity {1 << cpu:b};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  ssl_session_tickets on;
  ssl_protocols TLSv1.2 TLSv1.3;  # fastcluster's default (nginx before 1.23.4 stops at TLS 1.2)
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ default_type text/plain; return 200 "Hello, World!"; }}
  }}
}}
""")
    return subprocess.Popen(["nginx", "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def measure(port: int, workers: list[int], seconds: int, client_cpu: int, new_connections: bool) -> str:
    wrk = ["taskset", "-c", str(client_cpu), "wrk", "-t1", "-c16", f"-d{seconds}s"]
    if new_connections:
        wrk += ["-H", "Connection: close"]
    before = cpu_seconds(workers)
    output = subprocess.run([*wrk, f"https://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    used = cpu_seconds(workers) - before
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return f"{requests / seconds:9.0f} req/s {used / max(requests, 1) * 1e6:8.1f} µs CPU/request"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--cpu", type=int, default=1, help="the CPU the servers run on")
    parser.add_argument("--client-cpu", type=int, default=0, help="the CPU wrk runs on")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found")
    work = Path(tempfile.mkdtemp(prefix="fastcluster-tls-bench-"))
    cert, key = certificate(work)
    servers = [("fastcluster built-in", lambda port: fastcluster(port, cert, key, args.cpu, None)),
               ("fastcluster ASGI", lambda port: fastcluster(port, cert, key, args.cpu, "hello_asgi:app"))]
    if shutil.which("nginx"):
        servers.append(("nginx", lambda port: nginx(port, cert, key, args.cpu, work)))
    for name, start in servers:
        port = free_port()
        process = start(port)
        try:
            wait_ready(port)
            workers = children(process.pid)
            for label, new in (("keep-alive", False), ("connection per request", True)):
                print(f"{name:22} {label:24} {measure(port, workers, args.seconds, args.client_cpu, new)}")
        finally:
            process.terminate()
            process.wait(15)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
