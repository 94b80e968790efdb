"""Finding the user's app: `module:attribute` (dotted attribute allowed), --app-dir, --factory, and
whether it speaks ASGI or WSGI (--interface auto decides by the callable's signature)."""

from __future__ import annotations

import importlib
import inspect
import sys


class AppLoadError(Exception):
    """The app cannot be loaded; the message is the one line the user sees."""


def load_app(spec: str, app_dir: str, factory: bool = False) -> object:
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppLoadError(f"app {spec!r} must look like 'package.module:attribute'")
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(f"cannot import module {module_name!r} (looked in {app_dir} and sys.path)"
                               ) from None
        raise AppLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise AppLoadError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        try:
            target = target()
        except Exception as exc:
            raise AppLoadError(f"app factory {spec!r} failed: {type(exc).__name__}: {exc}") from None
    if not callable(target):
        raise AppLoadError(f"{spec} is not callable (got {type(target).__name__}); is it a factory? "
                           "then pass --factory")
    return target


def detect_interface(app: object) -> str:
    """'asgi' for an async callable (or an object whose __call__ is async), else 'wsgi'."""
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)  # noqa: B004 - an instance with an async __call__
    if not inspect.isfunction(app) and call is not None and inspect.iscoroutinefunction(call):
        return "asgi"
    return "wsgi"
