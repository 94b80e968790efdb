"""Logging: fastcluster's own logger leaves the root logger to the app (Django-like dictConfig, basicConfig),
so every line is printed once; --log-config as JSON, YAML, TOML or INI; bad log configs are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.app.client import fetch
from tests.conftest import free_port

APP = """
import json
import logging
import logging.config
import sys

{setup}

log = logging.getLogger("shop.orders")


def app(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    log.info("order placed on %s", environ["PATH_INFO"])
    body = json.dumps([handler.formatter._fmt for handler in logging.getLogger().handlers]).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""

DJANGO_LIKE = """logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"app": {"format": "APP %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "app", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"shop": {"handlers": [], "level": "INFO", "propagate": True}},
})"""

BASIC_CONFIG = ('logging.basicConfig(level=logging.INFO, format="APP %(name)s: %(message)s", '
                'stream=sys.stdout)')


@pytest.mark.parametrize("setup", [DJANGO_LIKE, BASIC_CONFIG], ids=["dictConfig", "basicConfig"])
@pytest.mark.parametrize("preload", [[], ["--preload"]])
def test_the_apps_logging_stands_and_each_line_is_printed_once(serve, tmp_path, setup, preload):
    (tmp_path / "shop.py").write_text(APP.format(setup=setup))
    server = serve("shop:app", "--app-dir", str(tmp_path), *preload, workers=2)
    server.tracebacks_expected = True  # /boom's traceback is logged
    response, body = fetch(server, "/order")
    assert json.loads(body) == ["APP %(name)s: %(message)s"]  # the root logger's handlers are the app's
    assert fetch(server, "/boom")[0].status == 500
    server.stop()
    assert server.output.count("APP shop.orders: order placed on /order") == 1, server.output
    # Our own lines keep our format, once: they do not propagate into the app's root handler.
    assert server.output.count("the app failed on GET /boom") == 1, server.output
    assert server.output.count("listening on") == 1, server.output
    assert "APP fastcluster" not in server.output, server.output


JSON_CONFIG = {
    "version": 1,
    "formatters": {"tagged": {"format": "CONFIGURED %(name)s %(levelname)s %(message)s"}},
    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "tagged", "stream": "ext://sys.stderr"}},
    "loggers": {"fastcluster": {"handlers": ["err"], "level": "INFO", "propagate": False}},
}

TOML_CONFIG = """version = 1
[formatters.tagged]
format = "CONFIGURED %(name)s %(levelname)s %(message)s"
[handlers.err]
class = "logging.StreamHandler"
formatter = "tagged"
stream = "ext://sys.stderr"
[loggers.fastcluster]
handlers = ["err"]
level = "INFO"
propagate = false
"""

YAML_CONFIG = """version: 1
formatters:
  tagged: {format: "CONFIGURED %(name)s %(levelname)s %(message)s"}
handlers:
  err: {class: logging.StreamHandler, formatter: tagged, stream: "ext://sys.stderr"}
loggers:
  fastcluster: {handlers: [err], level: INFO, propagate: false}
"""

INI_CONFIG = """[loggers]
keys = root, fastcluster
[handlers]
keys = err
[formatters]
keys = tagged
[logger_root]
handlers =
[logger_fastcluster]
qualname = fastcluster
handlers = err
level = INFO
propagate = 0
[handler_err]
class = StreamHandler
formatter = tagged
args = (sys.stderr,)
[formatter_tagged]
format = CONFIGURED %(name)s %(levelname)s %(message)s
"""


@pytest.mark.parametrize("name, text", [
    ("log.json", json.dumps(JSON_CONFIG)), ("log.toml", TOML_CONFIG), ("log.yaml", YAML_CONFIG),
    ("log.ini", INI_CONFIG),
])
def test_log_config_applies_in_master_and_workers(serve, tmp_path, name, text):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    (tmp_path / name).write_text(text)
    (tmp_path / "shop.py").write_text(APP.format(setup=""))
    server = serve("shop:app", "--app-dir", str(tmp_path), "--log-config", str(tmp_path / name))
    server.tracebacks_expected = True  # /boom's traceback is logged
    assert fetch(server, "/boom")[0].status == 500  # a worker logs it
    server.stop()
    assert server.output.count("CONFIGURED fastcluster.master INFO fastcluster master") == 1, server.output
    assert server.output.count("CONFIGURED fastcluster.app ERROR the app failed on GET /boom") == 1, \
        server.output
    assert "[INFO]" not in server.output and "[ERROR]" not in server.output, server.output  # not doubled


def run_serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastcluster", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=20, env={**os.environ, **(env or {})})


def test_yaml_without_pyyaml_is_a_clear_error(tmp_path):
    (tmp_path / "log.yaml").write_text(YAML_CONFIG)
    hidden = tmp_path / "hide" / "yaml"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('PyYAML is not installed')\n")
    result = run_serve("--log-config", str(tmp_path / "log.yaml"), env={"PYTHONPATH": str(hidden.parent)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fastcluster: error: --log-config: {tmp_path / 'log.yaml'} is YAML, which needs PyYAML "
        "(pip install pyyaml); or give the same as .json or .toml"], result.stderr


@pytest.mark.parametrize("name, text, message", [
    ("missing.json", None, "cannot read"),
    ("bad.json", "{not json", "Expecting property name"),
    ("noversion.json", '{"handlers": {}}', "version"),
    ("list.json", "[1]", "must hold a mapping"),
    ("bad.ini", "[loggers]\nkeys = root\n", "missing"),
    ("badclass.json", '{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}', "handler 'h'"),
])
def test_bad_log_config_is_one_line_and_exit_2(tmp_path, name, text, message):
    if text is not None:
        (tmp_path / name).write_text(text)
    result = run_serve("--log-config", str(tmp_path / name))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastcluster: error: --log-config: "), result.stderr
    assert message in lines[0], lines[0]
