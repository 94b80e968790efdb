"""The servers compared: how each one is started for a scenario, or why it is skipped."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
DEFAULT_FLOOR_SOURCE = HERE.parent.parent / "shared" / "bench" / "ref_epoll.c"
HELLO = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'
ITEM_PATH = "/items/42?q=abc"
ITEM = {"item_id": 42, "name": "item 42", "q": "abc"}  # what every framework app answers at ITEM_PATH


@dataclass
class Scenario:
    name: str
    path: str = "/"
    pipelined: bool = False
    body_bytes: int = 0  # 0: the hello answer
    kind: str = "builtin"  # builtin | static | asgi | wsgi | workers
    workers: int = 1
    app: str = ""  # asgi and wsgi: module:attribute under benchmarks/apps
    framework: str = ""  # the package the app needs, checked before the scenario runs
    connections: int = 64  # wrk's, unless --connections says otherwise
    answer: dict | None = None  # the JSON the app must answer

    def python_app(self, interface: str) -> str | None:
        """The app a Python server runs for this scenario, or None when it has none."""
        if self.kind in ("asgi", "wsgi"):
            return self.app if self.kind == interface else None
        if self.kind == "builtin" and self.path == "/":
            return f"hello_{interface}:app"  # BODY_BYTES sets the body size
        return None

    def wrong_answer(self, status: int, content_type: str, body: bytes) -> str | None:
        """Why an answer is not this scenario's, or None when it is."""
        if status != 200:
            return f"answered {status}, not 200"
        if self.body_bytes and len(body) != self.body_bytes:
            return f"answered {len(body)} bytes, not {self.body_bytes}"
        if self.answer is not None:
            if not content_type.startswith("application/json"):
                return f"answered content-type {content_type or 'none'}, not application/json"
            try:
                found = json.loads(body)
            except ValueError:
                found = body[:100]
            if found != self.answer:
                return f"answered {found!r}, not {self.answer!r}"
        return None


@dataclass
class Launch:
    command: list[str]
    env: dict[str, str]
    cwd: Path | None = None


class Peer:
    name = ""

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        return None

    def launch(self, scenario: Scenario, port: int, work: Path) -> Launch | str | None:
        """How to start it for scenario; a string says why it cannot; None: the scenario is not for it."""
        raise NotImplementedError


def fastcluster_supports(flag: str) -> bool:
    done = subprocess.run([sys.executable, "-m", "fastcluster", "serve", "--help"], capture_output=True,
                          text=True)
    return flag in done.stdout


class Fastcluster(Peer):
    name = "fastcluster"
    cpu = 1  # where a one-worker scenario's worker is pinned
    extra: list[str] = []  # flags added to every launch

    def launch(self, scenario, port, work):
        base = [sys.executable, "-m", "fastcluster", "serve", "--port", str(port), "--log-level", "warning",
                *self.extra]
        pin = ["--workers", "1", "--cpus", str(self.cpu)]
        if scenario.kind == "workers":
            return Launch(base + ["--workers", str(scenario.workers)], {})
        if scenario.kind == "builtin":
            size = ["--response-size", str(scenario.body_bytes)] if scenario.body_bytes else []
            return Launch(base + pin + size, {})
        if scenario.kind == "static":
            if not fastcluster_supports("--static"):
                return "this fastcluster has no --static (fastcluster serve --help does not list it)"
            return Launch(base + pin + ["--static", str(work / "static")], {})
        if not fastcluster_supports("--app-dir"):
            return "this fastcluster cannot run apps (fastcluster serve --help does not list --app-dir)"
        return Launch(base + pin + [scenario.app, "--app-dir", str(APPS), "--interface", scenario.kind], {})


class Floor(Peer):
    name = "floor (C epoll)"
    source = DEFAULT_FLOOR_SOURCE  # --floor-source changes it

    def missing(self):
        return None if shutil.which("gcc") else "gcc not found"

    def launch(self, scenario, port, work):
        if scenario.kind == "wsgi":  # the WSGI apps under the same loop (wsgi_floor.c)
            return Launch([sys.executable, str(HERE / "wsgi_floor.py"), scenario.app, "--port", str(port),
                           "--build-dir", str(work)], {})
        if scenario.kind != "builtin" or scenario.path != "/" or scenario.body_bytes:
            return None
        if not self.source.exists():
            return f"{self.source} not found (pass --floor-source PATH to ref_epoll.c)"
        binary = work / "ref_epoll"
        if not binary.exists():
            subprocess.run(["gcc", "-O2", "-o", str(binary), str(self.source)], check=True)
        return Launch([str(binary), str(port)], {})


class Nginx(Peer):
    name = "nginx"
    worker_connections = 4096
    http_extra = ""  # directives added to the http block

    def missing(self):
        return None if shutil.which("nginx") else "nginx not found (apt-get install nginx-light)"

    def launch(self, scenario, port, work):
        if scenario.kind not in ("builtin", "static"):
            return None
        if scenario.kind == "static":
            location = f"location / {{ root {work / 'static'}; }}"
        elif scenario.body_bytes:
            # every path answers with the file of that size, as the other servers do
            location = (f"location / {{ default_type text/plain; root {work / 'bodies'}; "
                        f"try_files /{scenario.body_bytes} =404; }}")
        else:
            location = (f'location / {{ default_type text/plain; return 200 "{HELLO.decode()}"; }}\n'
                        f"location /json {{ default_type application/json; return 200 '{JSON.decode()}'; }}")
        config = work / f"nginx-{port}.conf"
        config.write_text(f"""worker_processes 1;
daemon off;
pid {work}/nginx-{port}.pid;
error_log {work}/nginx-{port}.err;
events {{ worker_connections {self.worker_connections}; }}
http {{
  access_log off;
  sendfile on;
  keepalive_requests 100000000;{self.http_extra}
  server {{ listen 127.0.0.1:{port}; {location} }}
}}
""")
        return Launch(["nginx", "-c", str(config)], {})


class PythonPeer(Peer):
    module = ""

    def missing(self):
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} not installed (use --install)"
        return None


class Uvicorn(PythonPeer):
    name = "uvicorn"
    module = "uvicorn"

    def launch(self, scenario, port, work):
        app = scenario.python_app("asgi")
        if app is None:
            return None
        env = {"BODY_BYTES": str(scenario.body_bytes)} if scenario.body_bytes else {}
        return Launch([sys.executable, "-m", "uvicorn", app, "--app-dir", str(APPS), "--port",
                       str(port), "--http", "httptools", "--loop", "uvloop", "--no-access-log",
                       "--log-level", "warning"], env)


class Granian(PythonPeer):
    name = "granian"
    module = "granian"

    def launch(self, scenario, port, work):
        interface = "wsgi" if scenario.kind == "wsgi" else "asgi"
        app = scenario.python_app(interface)
        if app is None:
            return None
        env = {"BODY_BYTES": str(scenario.body_bytes)} if scenario.body_bytes else {}
        return Launch([sys.executable, "-m", "granian", "--interface", interface, "--workers", "1",
                       "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", app],
                      env, cwd=APPS)


class Gunicorn(PythonPeer):
    name = "gunicorn"
    module = "gunicorn"

    def launch(self, scenario, port, work):
        if scenario.kind != "wsgi" and not (scenario.kind == "builtin" and scenario.body_bytes):
            return None  # the body scenarios and the WSGI apps
        env = {"BODY_BYTES": str(scenario.body_bytes)} if scenario.body_bytes else {}
        return Launch([sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
                       "--log-level", "warning", scenario.python_app("wsgi")], env, cwd=APPS)


PEERS: dict[str, Peer] = {peer.name.split()[0]: peer for peer in
                          (Floor(), Nginx(), Fastcluster(), Uvicorn(), Granian(), Gunicorn())}


def prepare_files(work: Path, sizes: list[int]) -> None:
    """Bodies nginx serves for the body scenarios, and the directory of the static-file scenario."""
    (work / "bodies").mkdir(exist_ok=True)
    for size in sizes:
        pattern = b"0123456789abcdefghijklmnopqrstuvwxyz\n" * (size // 37 + 1)
        (work / "bodies" / str(size)).write_bytes(pattern[:size])
    (work / "static").mkdir(exist_ok=True)
    (work / "static" / "index.html").write_bytes(b"<!doctype html><title>hi</title>" + b"." * 4000)
