"""Three fastcluster hosts behind HAProxy, each in its own network namespace, wrk in a fourth: rolling
reloads and a graceful stop with --drain-delay lose no request; a host SIGKILLed loses only what it had in
flight, HAProxy's /healthz checks mark it down, and traffic goes on. Needs root, `ip netns`, haproxy, wrk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import children_of, wait_until

HOSTS = 3
CONNECTIONS = 16
DRAIN_DELAY = "3"  # well past HAProxy's fall (2 checks 200 ms apart)
HAPROXY_PORT = 8080
HOST_PORT = 8000
ADMIN_PORT = 9000


def host_address(index: int) -> str:
    return f"10.77.{index + 1}.2"


class Network:
    """Namespaces lb (HAProxy), hN (host N) and client, one veth pair from lb to each; 10.77.N.0/24 per
    link (lb .1, the other end .2); nothing is added outside these namespaces."""

    def __init__(self) -> None:
        tag = f"fc{os.getpid()}"
        self.lb, self.client = f"{tag}lb", f"{tag}client"
        self.hosts = [f"{tag}h{index}" for index in range(HOSTS)]
        self.made: list[str] = []

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)

    def build(self) -> None:
        for name in [self.lb, self.client, *self.hosts]:
            self.ip("netns", "add", name)
            self.made.append(name)
            self.ip("-n", name, "link", "set", "lo", "up")
        for subnet, name in enumerate([*self.hosts, self.client], start=1):
            if name == self.client:
                subnet = 99
            self.ip("-n", self.lb, "link", "add", f"v{subnet}", "type", "veth", "peer", "name", "eth0",
                    "netns", name)
            self.ip("-n", self.lb, "addr", "add", f"10.77.{subnet}.1/24", "dev", f"v{subnet}")
            self.ip("-n", self.lb, "link", "set", f"v{subnet}", "up")
            self.ip("-n", name, "addr", "add", f"10.77.{subnet}.2/24", "dev", "eth0")
            self.ip("-n", name, "link", "set", "eth0", "up")

    def remove(self) -> None:
        for name in self.made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)

    def run_in(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", name]


@pytest.fixture
def network() -> Iterator[Network]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make network namespaces")
    for tool in ("haproxy", "wrk"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    net = Network()
    try:
        net.build()
    except (subprocess.CalledProcessError, OSError) as exc:
        net.remove()
        pytest.skip(f"cannot make network namespaces: {getattr(exc, 'stderr', '') or exc}")
    yield net
    net.remove()


HAPROXY_CONFIG = """\
global
    stats socket {stats} mode 600 level admin
    maxconn 1000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    retries 3
    option redispatch 1
    # No `retry-on empty-response` (the README recommends it): nothing a host dropped is resent, so every
    # request a drain lost would count.

frontend web
    bind 10.77.99.1:{port}
    default_backend fastcluster

backend fastcluster
    balance roundrobin
    option httpchk GET /healthz
    default-server check port {admin} inter 200ms fall 2 rise 2
{servers}
"""


class HAProxy:
    def __init__(self, net: Network, directory: str) -> None:
        self.stats = os.path.join(directory, "haproxy.sock")
        config = os.path.join(directory, "haproxy.cfg")
        servers = "".join(f"    server h{index} {host_address(index)}:{HOST_PORT}\n"
                          for index in range(HOSTS))
        with open(config, "w") as handle:
            handle.write(HAPROXY_CONFIG.format(stats=self.stats, port=HAPROXY_PORT, admin=ADMIN_PORT,
                                               servers=servers))
        self.proc = subprocess.Popen([*net.run_in(net.lb), "haproxy", "-db", "-f", config],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.stats)
            sock.sendall(text.encode() + b"\n")
            return b"".join(iter(lambda: sock.recv(65536), b"")).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """server name -> its `show stat` row (status, econ: connection errors, wretr: retries, ...)."""
        try:
            lines = self.command("show stat").splitlines()
        except OSError:
            return {}
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {row["svname"]: row for row in rows
                if row["pxname"] == "fastcluster" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def states(self) -> dict[str, str]:
        """server name -> UP, DOWN, ..."""
        return {name: row["status"].split()[0] for name, row in self.servers().items()}

    def connection_errors(self) -> dict[str, int]:
        """server name -> connections to it that failed, retried or redispatched to another server (what a
        closed listener costs)."""
        return {name: sum(int(row[key] or 0) for key in ("econ", "wretr", "wredis"))
                for name, row in self.servers().items()}

    def all_up(self) -> bool:
        states = self.states()
        return len(states) == HOSTS and set(states.values()) == {"UP"}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Wrk:
    """wrk in the client namespace until stopped (SIGINT makes it print its summary)."""

    def __init__(self, net: Network) -> None:
        self.proc = subprocess.Popen(
            [*net.run_in(net.client), "wrk", "-t1", f"-c{CONNECTIONS}", "-d120s", "--timeout", "10s",
             f"http://10.77.99.1:{HAPROXY_PORT}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self) -> tuple[int, int, str]:
        """(requests, failed requests: socket errors and non-2xx answers, wrk's output)."""
        self.proc.send_signal(signal.SIGINT)
        output, _ = self.proc.communicate(timeout=20)
        requests = int(re.search(r"(\d+) requests in", output).group(1))
        failed = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", output)))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        return requests, failed + (int(non2xx.group(1)) if non2xx else 0), output


def test_reloads_drains_and_a_killed_host_behind_haproxy(network, serve, tmp_path):
    directory = str(tmp_path)

    def start_host(index: int):
        """Started, not waited for: the hosts boot side by side."""
        address = host_address(index)
        return serve("--bind", f"{address}:{HOST_PORT}", "--admin-host", address, "--admin-port",
                     str(ADMIN_PORT), "--control", os.path.join(directory, f"h{index}.sock"),
                     "--drain-delay", DRAIN_DELAY, "--graceful-timeout", "10", "--workers", "1", "--no-pin",
                     port=None, ready=False, prefix=network.run_in(network.hosts[index]))

    def reload(index: int) -> None:
        result = subprocess.run([sys.executable, "-m", "fastcluster", "reload", "--control",
                                 os.path.join(directory, f"h{index}.sock")], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result

    hosts = [start_host(index) for index in range(HOSTS)]
    for host in hosts:
        host.wait_ready()
    haproxy = HAProxy(network, directory)
    try:
        assert wait_until(haproxy.all_up, 15), haproxy.states()

        # (a) A rolling reload of every host in turn, then a graceful stop and a start of one: nothing lost.
        wrk = Wrk(network)
        time.sleep(0.5)
        for index in range(HOSTS):
            reload(index)
        hosts[1].signal(signal.SIGTERM)
        assert wait_until(lambda: haproxy.states().get("h1") == "DOWN", 10), haproxy.states()
        assert hosts[1].proc.wait(20) == 0
        hosts[1] = start_host(1).wait_ready()
        assert wait_until(haproxy.all_up, 15), haproxy.states()
        time.sleep(0.5)
        requests, failed, output = wrk.finish()
        print(f"reloads and a drained restart: {requests} requests, {failed} failed")
        assert requests > 0 and failed == 0, output
        # HAProxy never met a refused connection: it had marked the host down (its /healthz said 503)
        # before the listener closed, so even a balancer that does not retry would have lost nothing.
        assert set(haproxy.connection_errors().values()) == {0}, haproxy.connection_errors()

        # (b) SIGKILL one host's master and workers: only what it had in flight may fail.
        wrk = Wrk(network)
        time.sleep(0.5)
        victim = hosts[2]
        pids = [victim.pid, *children_of(victim.pid)]
        killed = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        victim.expected_exit = None
        assert wait_until(lambda: haproxy.states().get("h2") == "DOWN", 10), haproxy.states()
        marked_down = time.monotonic() - killed
        time.sleep(0.5)
        requests, failed, output = wrk.finish()
        print(f"SIGKILL of a host: {requests} requests, {failed} failed; "
              f"marked down after {marked_down:.2f}s")
        # Each connection HAProxy had to the host fails at most one request: those in flight, and those it
        # sent on idle kept-alive connections before reading their reset.
        assert requests > 0 and failed <= 2 * CONNECTIONS, output

        # Traffic goes on with the two hosts left.
        wrk = Wrk(network)
        time.sleep(0.5)
        requests, failed, output = wrk.finish()
        assert requests > 0 and failed == 0, output
    finally:
        for host in hosts:  # drain together, not one after the other at teardown
            if host.proc.poll() is None:
                host.signal(signal.SIGTERM)
        haproxy.stop()
