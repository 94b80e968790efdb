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


@pytest.mark.parametrize("preload", [[], ["--preload"]])
def test_broken_app_is_one_line_and_exit_2(tmp_path, preload):
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('config missing')\n")
    result = run_serve("--app-dir", str(tmp_path), "broken:app", *preload)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RuntimeError: config missing" in lines[0], result.stderr


def test_missing_attribute_exit_2():
    result = run_serve("--app-dir", APPS, "asgi_apps:nothing")
    assert result.returncode == 2 and "has no attribute 'nothing'" in result.stderr


def test_preload_serves(serve):
    server = serve("--app-dir", APPS, "--preload", "wsgi_apps:write_callable", workers=2)
    from tests.app.test_wsgi_edges import get
    assert get(server, "/")[1] == b"hello world"
