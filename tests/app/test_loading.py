"""Loading the app: module:attribute, --interface auto, --preload, and one clear line for a broken app."""

import subprocess
import sys

import pytest

from fastcluster.app.loading import AppLoadError, detect_interface, load_app
from tests.app import asgi_apps, wsgi_apps
from tests.app.test_asgi_edges import APPS


def run_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=20)


def test_detect_interface():
    assert detect_interface(asgi_apps.scope_echo) == "asgi"
    assert detect_interface(asgi_apps.instance) == "asgi"
    assert detect_interface(asgi_apps.AsgiClass) == "asgi"
    assert detect_interface(wsgi_apps.environ_echo) == "wsgi"


def test_dotted_attribute():
    assert load_app("asgi_apps:AsgiClass.__call__", APPS).__qualname__ == "AsgiClass.__call__"


@pytest.mark.parametrize("target, message", [
    ("no_such_module:app", "cannot import module 'no_such_module'"),
    ("asgi_apps:missing", "has no attribute 'missing'"),
    ("asgi_apps", "must look like"),
])
def test_load_errors(target, message):
    with pytest.raises(AppLoadError, match=message):
        load_app(target, APPS)


def test_a_load_error_carries_the_apps_own_traceback(tmp_path):
    (tmp_path / "deep.py").write_text("def connect():\n    raise ValueError('bad DSN')\n\n\nconnect()\n")
    with pytest.raises(AppLoadError) as caught:
        load_app("deep:app", str(tmp_path))
    assert str(caught.value) == "importing 'deep' failed: ValueError: bad DSN"
    frames = [line for line in caught.value.details.splitlines() if line.startswith("  File ")]
    assert frames == [f'  File "{tmp_path / "deep.py"}", line 5, in <module>',
                      f'  File "{tmp_path / "deep.py"}", line 2, in connect'], caught.value.details


BROKEN = """
with open({imports!r}, "a") as imports:
    imports.write("imported\\n")
import json
raise RuntimeError("config missing")
"""


@pytest.mark.parametrize("preload", [[], ["--preload"]])
def test_broken_app_fails_once_with_its_traceback_and_exit_2(tmp_path, preload):
    imports = tmp_path / "imports"
    (tmp_path / "broken.py").write_text(BROKEN.format(imports=str(imports)))
    result = run_serve("--app-dir", str(tmp_path), "broken:app", "--workers", "2", *preload)
    assert result.returncode == 2
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert f'File "{tmp_path / "broken.py"}", line 5, in <module>' in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fastcluster: error: ") and last.endswith("RuntimeError: config missing"), last
    # Imported once per worker (or once in the master with --preload): no extra import to check it first.
    assert imports.read_text().count("imported") == (1 if preload else 2)


def test_a_missing_dependency_is_named(tmp_path):
    (tmp_path / "needs.py").write_text("import json\nimport flask_that_is_not_installed\n")
    result = run_serve("--app-dir", str(tmp_path), "needs:app", "--workers", "2")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith("ModuleNotFoundError: No module named 'flask_that_is_not_installed'"), last
    assert "cannot import module" not in result.stderr
    assert f'File "{tmp_path / "needs.py"}", line 2, in <module>' in result.stderr


@pytest.mark.parametrize("flag", [["--static", "."], ["--response-body", "x"], ["--response-status", "503"],
                                  ["--response-size", "0"], ["--response-header", "X-A: 1"],
                                  ["--response-file", __file__]])
def test_responder_flags_with_an_app_are_one_line_and_exit_2(flag):
    result = run_serve("--app-dir", APPS, "asgi_apps:scope_echo", *flag)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"fastcluster: error: {flag[0]} is for the built-in responder; with APP given, the app "
                     "answers every request"], result.stderr


def test_missing_attribute_exit_2():
    result = run_serve("--app-dir", APPS, "asgi_apps:nothing")
    assert result.returncode == 2 and "has no attribute 'nothing'" in result.stderr


def test_preload_serves(serve):
    server = serve("--app-dir", APPS, "--preload", "wsgi_apps:write_callable", workers=2)
    from tests.app.test_wsgi_edges import get
    assert get(server, "/")[1] == b"hello world"


LIFESPAN_FAILS = """
from contextlib import asynccontextmanager

from starlette.applications import Starlette


async def raw(scope, receive, send):
    await receive()
    open_pool()


def open_pool():
    raise ConnectionError("database unreachable at db:5432")


@asynccontextmanager
async def lifespan(app):
    open_pool()
    yield


starlette = Starlette(lifespan=lifespan)
"""


@pytest.mark.parametrize("app, mode", [("raw", "on"), ("starlette", "auto")])
def test_a_lifespan_startup_failure_ends_with_the_exceptions_own_line(tmp_path, app, mode):
    (tmp_path / "pools.py").write_text(LIFESPAN_FAILS)
    result = run_serve("--app-dir", str(tmp_path), f"pools:{app}", "--lifespan", mode, "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert f'File "{tmp_path / "pools.py"}", line 13, in open_pool' in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("fastcluster: error: no worker could start: lifespan "
                                                      "startup failed: ConnectionError: database unreachable "
                                                      "at db:5432")
