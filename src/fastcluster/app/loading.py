"""Finding the user's app: `module:attribute` (dotted attribute allowed), --app-dir, --factory, and
whether it speaks ASGI or WSGI (--interface auto decides by the callable's signature). A failure carries
the app's own traceback, so the developer sees the line that broke, not only ours."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback

#: Frames from these files lead into the app's code; a traceback shown to the user starts after them.
LEADING_FRAMES = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
                  os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep, "<frozen importlib")


class AppLoadError(Exception):
    """The app cannot be loaded or started: `str()` is the one line the user sees, `details` the app's
    traceback (empty when there is nothing in the app to point at)."""

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.details = details


def app_failure(what: str, exc: BaseException) -> AppLoadError:
    """`what` failed with `exc`: the reason ends with the exception's own last line, the details are its
    traceback from the first frame that is not ours or importlib's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(LEADING_FRAMES):
        tb = tb.tb_next
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return AppLoadError(f"{what}: {last}", "".join(traceback.format_exception(type(exc), exc, tb)))


def load_app(spec: str, app_dir: str, factory: bool = False) -> object:
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppLoadError(f"app {spec!r} must look like 'package.module:attribute'")
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise AppLoadError(f"cannot import module {module_name!r}: {exc} (looked in {app_dir} and "
                               "sys.path)") from None
        raise app_failure(f"importing {module_name!r} failed", exc) from None
    except (Exception, SystemExit) as exc:
        raise app_failure(f"importing {module_name!r} failed", exc) from None
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        try:
            target = target()
        except (Exception, SystemExit) as exc:
            raise app_failure(f"app factory {spec!r} failed", exc) from None
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
