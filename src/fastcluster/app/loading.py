"""Finding the user's app from `module:attribute`, deciding whether it speaks ASGI or WSGI, and checking
that it imports before any worker is forked, so a broken app fails once with one line."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable


class LoadError(Exception):
    """The app cannot be loaded; the message is the one line the user sees."""


@dataclass(frozen=True)
class AppSpec:
    target: str
    app_dir: str = "."
    factory: bool = False
    interface: str = "auto"  # auto | asgi | wsgi
    preload: bool = False
    root_path: str = ""
    lifespan: str = "auto"  # auto | on | off
    threads: int = 0  # WSGI: 0 runs requests on the event loop's thread


@dataclass(frozen=True)
class LoadedApp:
    app: Callable[..., Any]
    interface: str  # asgi | wsgi


def load(spec: AppSpec) -> LoadedApp:
    module_name, sep, attribute = spec.target.partition(":")
    if not sep or not module_name or not attribute:
        raise LoadError(f"app {spec.target!r} must look like module:attribute")
    app_dir = os.path.abspath(spec.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise LoadError(f"cannot import module {module_name!r} (looked in {app_dir})") from None
        raise LoadError(f"importing {module_name!r} failed: {describe(exc)}") from None
    except BaseException as exc:  # an app's import may raise anything, even SystemExit
        raise LoadError(f"importing {module_name!r} failed: {describe(exc)}") from None
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if spec.factory:
        try:
            app = app()
        except BaseException as exc:
            raise LoadError(f"app factory {spec.target!r} failed: {describe(exc)}") from None
    if not callable(app):
        raise LoadError(f"{spec.target!r} is not callable")
    interface = spec.interface if spec.interface != "auto" else guess_interface(app)
    return LoadedApp(app, interface)


def guess_interface(app: Any) -> str:
    """An async function, or an object whose __call__ is async, is ASGI; anything else is WSGI."""
    if inspect.isclass(app):
        call = getattr(app, "__call__", None)
        return "asgi" if asyncio.iscoroutinefunction(call) else "wsgi"
    if asyncio.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)
    return "asgi" if asyncio.iscoroutinefunction(call) else "wsgi"


def describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def check_in_child(spec: AppSpec) -> None:
    """Import the app in a throwaway child so the master stays free of app state; raise LoadError if it fails."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        status = 0
        try:
            load(spec)
        except LoadError as exc:
            os.write(write_end, str(exc).encode(errors="replace")[:2000])
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        message = reader.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise LoadError(message or f"loading {spec.target!r} failed")
