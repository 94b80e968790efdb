"""HTTPS cost per request: fastcluster's built-in responder and a hello-world ASGI app against nginx, uvicorn
(httptools + uvloop) and granian, each with one worker, every server process pinned to one CPU and wrk to
another, the same ECDSA P-256 certificate, and the cipher pinned for all of them on the client side (an
OpenSSL configuration wrk reads): TLS 1.3 offering only TLS_AES_128_GCM_SHA256, and TLS 1.2 offering only
ECDHE-ECDSA-AES128-GCM-SHA256. Measured with wrk over keep-alive connections and with a new connection (a
full handshake: wrk resumes no session) per request. Prints the server's CPU time per request (user +
system of all its processes, from /proc, over the requests wrk counted; the median of --rounds runs taken
in turn across the servers, which all run at once, so that a busy spell of the machine does not fall on
one server only), the negotiated version and cipher, and the ratios the targets are set on.

    python benchmarks/tls.py [--seconds 3] [--rounds 3] [--cpu 1] [--client-cpu 0] [--versions 1.3,1.2]
                             [--only NAME,...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
TICKS = os.sysconf("SC_CLK_TCK")
# What the client offers, so that every server negotiates the same cipher whatever its own defaults.
CLIENT_CONFIG = """openssl_conf = init
[init]
ssl_conf = ssl
[ssl]
system_default = pinned
[pinned]
MinProtocol = TLSv{version}
MaxProtocol = TLSv{version}
CipherString = ECDHE-ECDSA-AES128-GCM-SHA256
Ciphersuites = TLS_AES_128_GCM_SHA256
Groups = P-256
"""
# (first server, second server, target): the first's CPU per request over the second's.
TARGETS = [("fastcluster built-in", "nginx", 1.15), ("fastcluster ASGI", "uvicorn", 0.4),
           ("fastcluster ASGI", "granian", None)]


@dataclass
class Launch:
    command: list[str]
    cwd: Path | None = None


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
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (every server process: masters, workers, helpers)."""
    tree = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            for child in handle.read().split():
                tree += process_tree(int(child))
    return tree


def wait_ready(port: int) -> None:
    for _ in range(150):
        done = subprocess.run(["curl", "-sk", f"https://127.0.0.1:{port}/"], capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers https on port {port}")


def fastcluster(app: str | None) -> Callable[[int, str, str, Path], Launch]:
    def launch(port: int, cert: str, key: str, work: Path) -> Launch:
        command = [sys.executable, "-m", "fastcluster", "serve", "--workers", "1", "--port", str(port),
                   "--ssl-certfile", cert, "--ssl-keyfile", key, "--log-level", "warning"]
        return Launch(command + ([app, "--app-dir", str(APPS)] if app else []))
    return launch


def uvicorn(port: int, cert: str, key: str, work: Path) -> Launch:
    return Launch([sys.executable, "-m", "uvicorn", "hello_asgi:app", "--app-dir", str(APPS), "--port",
                   str(port), "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level",
                   "warning", "--ssl-certfile", cert, "--ssl-keyfile", key])


def granian(port: int, cert: str, key: str, work: Path) -> Launch:
    return Launch([sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1", "--host",
                   "127.0.0.1", "--port", str(port), "--log-level", "warning", "--ssl-certificate", cert,
                   "--ssl-keyfile", key, "hello_asgi:app"], cwd=APPS)


def nginx(port: int, cert: str, key: str, work: Path) -> Launch:
    config = work / "nginx.conf"
    config.write_text(f"""worker_processes 1;
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
    return Launch(["nginx", "-c", str(config)])


SERVERS: dict[str, tuple[str | None, Callable[[int, str, str, Path], Launch]]] = {
    # name: (what it needs, how to start it)
    "fastcluster built-in": (None, fastcluster(None)),
    "fastcluster ASGI": (None, fastcluster("hello_asgi:app")),
    "nginx": ("nginx", nginx),
    "uvicorn": ("uvicorn", uvicorn),
    "granian": ("granian", granian),
}


def missing(needs: str | None) -> str | None:
    import importlib.util

    if needs is None:
        return None
    if needs == "nginx":
        return None if shutil.which("nginx") else "nginx not found"
    return None if importlib.util.find_spec(needs) else f"{needs} not installed (pip install '.[bench]')"


def negotiated(port: int, env: dict[str, str]) -> str:
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief"], input=b"",
                          capture_output=True, env=env, timeout=10)
    text = done.stderr.decode("latin-1")
    version = re.search(r"Protocol version: (\S+)", text)
    cipher = re.search(r"Ciphersuite: (\S+)", text)
    return f"{version.group(1)} {cipher.group(1)}" if version and cipher else "handshake failed"


def measure(port: int, pids: list[int], seconds: int, client_cpu: int, new_connections: bool,
            env: dict[str, str]) -> tuple[float, float]:
    """Requests per second and server CPU µs per request."""
    wrk = ["taskset", "-c", str(client_cpu), "wrk", "-t1", "-c16", f"-d{seconds}s"]
    if new_connections:
        wrk += ["-H", "Connection: close"]
    before = cpu_seconds(pids)
    output = subprocess.run([*wrk, f"https://127.0.0.1:{port}/"], capture_output=True, text=True,
                            env=env).stdout
    used = cpu_seconds(pids) - before
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return requests / seconds, used / max(requests, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="length of each wrk run (default 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per server and mode, taken in turn across servers; the median counts")
    parser.add_argument("--cpu", type=int, default=1, help="the CPU the servers run on")
    parser.add_argument("--client-cpu", type=int, default=0, help="the CPU wrk runs on")
    parser.add_argument("--versions", default="1.3,1.2", help="TLS versions to measure (default 1.3,1.2)")
    parser.add_argument("--only", help="these servers only, by name (comma-separated)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found")
    work = Path(tempfile.mkdtemp(prefix="fastcluster-tls-bench-"))
    cert, key = certificate(work)
    running: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        for name in args.only.split(",") if args.only else list(SERVERS):
            needs, start = SERVERS[name]
            if why := missing(needs):
                print(f"{name:22} skipped: {why}")
                continue
            port = free_port()
            launch = start(port, cert, key, work)
            running[name] = port, subprocess.Popen(["taskset", "-c", str(args.cpu), *launch.command],
                                                   cwd=launch.cwd, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
            wait_ready(port)
        for version in args.versions.split(","):
            client_config = work / f"client-{version}.cnf"
            client_config.write_text(CLIENT_CONFIG.format(version=version))
            measure_version(version, running, args, {**os.environ, "OPENSSL_CONF": str(client_config)})
    finally:
        for _, process in running.values():
            process.terminate()
            process.wait(15)
    shutil.rmtree(work)


def measure_version(version: str, running: dict[str, tuple[int, subprocess.Popen]], args: argparse.Namespace,
                    env: dict[str, str]) -> None:
    ciphers = {name: negotiated(port, env) for name, (port, _) in running.items()}
    served = [name for name in running if ciphers[name] != "handshake failed"]
    for name in running:
        if name not in served:
            print(f"{name:22} TLS {version} with the pinned cipher: handshake failed, not measured")
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for name in served:
            port, process = running[name]
            pids = process_tree(process.pid)
            for label, new in (("keep-alive", False), ("handshake", True)):
                samples.setdefault((name, label), []).append(
                    measure(port, pids, args.seconds, args.client_cpu, new, env))
    cpu: dict[tuple[str, str], float] = {}
    for (name, label), runs in samples.items():
        rate = statistics.median(run[0] for run in runs)
        cpu[name, label] = statistics.median(run[1] for run in runs)
        spread = ", ".join(f"{run[1]:.1f}" for run in runs)
        print(f"{name:22} {ciphers[name]:37} {label:10} {rate:9.0f} req/s {cpu[name, label]:8.1f} µs "
              f"CPU/request (runs: {spread})", flush=True)
    for label in ("keep-alive", "handshake"):
        for first, second, target in TARGETS:
            if (first, label) in cpu and (second, label) in cpu:
                ratio = cpu[first, label] / cpu[second, label]
                verdict = ""
                if target is not None:
                    verdict = f" (target ≤ {target:.2f}: {'met' if ratio <= target else 'missed'})"
                print(f"TLS {version} {label:10} {first} / {second}: {ratio:.2f}×{verdict}")


if __name__ == "__main__":
    main()
