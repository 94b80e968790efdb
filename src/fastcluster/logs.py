"""fastcluster's own logging: the `fastcluster` logger hierarchy with its own handler (propagation off), so
the root logger stays the app's to configure and no line is printed twice; and `--log-config FILE`
(dictConfig from JSON, YAML or TOML by extension, else an INI fileConfig), applied in the master before
the workers fork, so they run with it, and before any app is imported, so the app's own logging
configuration (Django's LOGGING, a basicConfig) comes last and stands."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys

from fastcluster.config import ConfigError
from fastcluster.settings import tomllib

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
DICT_FORMATS = (".json", ".yaml", ".yml", ".toml")


def setup_logging(level: str, log_config: str | None = None) -> None:
    """Our logger writes to stderr at `level`; then the user's --log-config may change anything."""
    ours = logging.getLogger("fastcluster")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    ours.handlers = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False
    if log_config is not None:
        apply_log_config(log_config)


def apply_log_config(path: str) -> None:
    """Configure logging from a file; a file that cannot work is a ConfigError (one line, exit 2).
    Loggers that exist already are kept unless the file says otherwise (fastcluster's own among them)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"--log-config: cannot read {path}: {exc.strerror}") from None
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension in DICT_FORMATS:
            config = parse_dict_config(path, extension, data)
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except ConfigError:
        raise
    except Exception as exc:  # the logging module raises many kinds; any of them means a bad file
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyError):  # fileConfig: a missing section or option
            message = f"missing {exc}"
        raise ConfigError(f"--log-config: {path}: {message}".replace("\n", " ")) from None


def parse_dict_config(path: str, extension: str, data: bytes) -> dict:
    if extension == ".json":
        config = json.loads(data)
    elif extension == ".toml":
        config = tomllib.loads(data.decode())
    else:
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"--log-config: {path} is YAML, which needs PyYAML (pip install pyyaml); "
                              "or give the same as .json or .toml") from None
        config = yaml.safe_load(data)
    if not isinstance(config, dict):
        raise ConfigError(f"--log-config: {path} must hold a mapping (a logging dictConfig)")
    return config

