"""--reload: real servers whose app files are edited under them (a new answer, a syntax error that keeps the
old workers, excluded files), the flag's errors, and the file filter's globs."""

from __future__ import annotations

import os
import select
import subprocess
import sys

from fastcluster.reloader import FileFilter
from tests.conftest import get, wait_until

APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{body!r}]
"""


def answer(port: int) -> bytes:
    try:
        return get(port)[1]
    except OSError:
        return b""


def serve_reloading(serve, tmp_path, *flags: str, workers: int = 1):
    """A server on webapp.py, once its watcher sees changes (the master says so)."""
    (tmp_path / "webapp.py").write_text(APP.format(body=b"version one"))
    server = serve("webapp:app", "--app-dir", str(tmp_path), "--reload", *flags, workers=workers)
    assert wait_until(lambda: "when files change in" in read_some(server), 10), server.output
    return server


def test_an_edited_app_is_served_by_new_workers(serve, tmp_path):
    server = serve_reloading(serve, tmp_path, workers=2)
    before = set(server.workers())
    assert answer(server.port) == b"version one"
    (tmp_path / "webapp.py").write_text(APP.format(body=b"version two!"))
    assert wait_until(lambda: answer(server.port) == b"version two!", 20), server.read_output()
    assert wait_until(lambda: not before & set(server.workers()), 10)
    server.stop()
    assert "rolling reload of 2 workers (changed: webapp.py)" in server.output


def test_a_syntax_error_keeps_the_old_workers_and_shows_its_traceback_once(serve, tmp_path):
    server = serve_reloading(serve, tmp_path)
    server.tracebacks_expected = True
    (tmp_path / "webapp.py").write_text("def app(environ, start_response:\n")
    assert wait_until(lambda: "reload aborted" in read_some(server), 20), server.output
    assert answer(server.port) == b"version one"
    (tmp_path / "webapp.py").write_text(APP.format(body=b"fixed again"))
    assert wait_until(lambda: answer(server.port) == b"fixed again", 20), read_some(server)
    server.stop()
    assert server.output.count('webapp.py", line 1') == 1, server.output  # the traceback, once
    assert "(importing 'webapp' failed: SyntaxError: '(' was never closed)" in server.output


def test_an_app_broken_from_the_start_is_waited_for(serve, tmp_path):
    (tmp_path / "webapp.py").write_text("import no_such_module_here\n")
    server = serve("webapp:app", "--app-dir", str(tmp_path), "--reload", workers=2, ready=False)
    server.tracebacks_expected = True
    assert wait_until(lambda: "waiting for a change" in read_some(server) and "when files change in" in
                      server.output, 20), server.output
    assert server.proc.poll() is None
    (tmp_path / "webapp.py").write_text(APP.format(body=b"works now"))
    assert wait_until(lambda: answer(server.port) == b"works now", 20), read_some(server)
    server.stop()
    # once in the reason, once at the traceback's end
    assert server.output.count("No module named 'no_such_module_here'") == 2, server.output


def read_some(server) -> str:
    """What the server printed so far (its output is a pipe: read what is there without blocking)."""
    stream = server.proc.stdout
    while select.select([stream], [], [], 0)[0]:
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            break
        server.output += chunk.decode(errors="replace")
    return server.output


def test_excluded_and_other_files_do_not_reload(serve, tmp_path):
    (tmp_path / "data").mkdir()
    server = serve_reloading(serve, tmp_path, "--reload-exclude", "skip_*.py",
                             "--reload-exclude", str(tmp_path / "data"), "--reload-include", "*.txt")
    for name in ("skip_me.py", "notes.md", ".hidden.py", "data/inside.py", ".venv/lib.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "counted.txt").write_text("a change that counts\n")
    assert wait_until(lambda: "rolling reload of 1 workers" in read_some(server), 20), server.output
    server.stop()
    [line] = [line for line in server.output.splitlines() if "rolling reload" in line]
    assert line.endswith("(changed: counted.txt)"), line
    for name in ("skip_me", "notes.md", ".hidden", "inside.py", "lib.py"):
        assert name not in server.output, server.output


def test_the_file_filter_follows_uvicorn_globs(tmp_path):
    default = FileFilter([str(tmp_path)])
    assert default(str(tmp_path / "app.py")) and default(str(tmp_path / "pkg" / "views.py"))
    for path in ("app.pyc", ".app.py", "notes.txt", "~app.py", ".git/hooks/x.py", ".venv/lib/webapp.py"):
        assert not default(str(tmp_path / path)), path
    chosen = FileFilter([str(tmp_path)], includes=["*.html", ".*"], excludes=["*.py"])
    assert chosen(str(tmp_path / "templates" / "index.html")) and chosen(str(tmp_path / ".env.html"))
    assert not chosen(str(tmp_path / "app.py"))


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", "serve", *args], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})})


def test_reload_without_watchfiles_is_one_line_and_status_2(tmp_path):
    shadow = tmp_path / "watchfiles"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = run("--reload", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    hint = "--reload needs watchfiles: pip install 'fastcluster-server[reload]'"
    assert result.stderr == f"fastcluster: error: {hint}\n"


def test_reload_flag_errors(tmp_path):
    for args, message in ((["--reload-dir", str(tmp_path)], "--reload-dir needs --reload"),
                          (["--reload", "--reload-dir", str(tmp_path / "nope")], "is not a directory"),
                          (["x:app", "--reload", "--preload"], "drop --preload")):
        result = run(*args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
