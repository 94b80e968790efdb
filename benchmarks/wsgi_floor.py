"""A WSGI app under the floor: wsgi_floor.c's epoll loop, which only reads, calls the app and writes.

    python benchmarks/wsgi_floor.py flask_app:app --port 8123 [--build-dir DIR]

Builds the extension with gcc (into --build-dir, default a temporary one) and serves on 127.0.0.1 until
killed. What a server adds to a framework's request on this machine beyond this floor is its own work;
the floor's own share is the machine's (the kernel's network work, the app running between reads and
writes instead of in a hot loop).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from app_alone import APPS, HOST, load, wsgi_environ

SOURCE = Path(__file__).resolve().parent / "wsgi_floor.c"


def build(directory: Path) -> Path:
    target = directory / f"wsgi_floor{sysconfig.get_config_var('EXT_SUFFIX')}"
    if not target.exists() or target.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", "-o",
                        str(target), str(SOURCE)], check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="module:attribute")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-dir", type=Path, default=APPS, help="where APP is imported from")
    parser.add_argument("--build-dir", type=Path, help="where the extension is built (default: a new one)")
    args = parser.parse_args(argv)
    built = build(args.build_dir or Path(tempfile.mkdtemp(prefix="wsgi-floor-")))
    spec = importlib.util.spec_from_file_location("wsgi_floor", built)
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    app = load(args.app, args.app_dir)
    environ = {**wsgi_environ("/", ""), "SERVER_PORT": str(args.port), "HTTP_HOST": f"{HOST}:{args.port}"}
    floor.serve(args.port, app, environ, io.BytesIO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
