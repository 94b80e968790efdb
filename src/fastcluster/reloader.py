"""--reload (development): a thread watches the app's directories with watchfiles and wakes the master's
loop, as a signal does, when a file that matters changes; the master then runs its rolling reload, whose
first new worker imports the changed app before any old worker stops (a syntax error keeps the old ones)."""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

#: uvicorn's defaults: Python sources count; hidden files, bytecode, editor swap and backup files do not.
DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")
#: The distribution's name, not the import name: `fastcluster` on PyPI is an unrelated library.
INSTALL_HINT = "--reload needs watchfiles: pip install 'fastcluster-server[reload]'"

#: How long watchfiles waits for changes before answering "none" (which tells that it watches).
WATCH_TIMEOUT_MS = 500

log = logging.getLogger("fastcluster.master")


def watchfiles_missing() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return True
    return False


class FileFilter:
    """Which changed paths reload. As uvicorn: a path must match an include glob (`*.py` by default) and
    no exclude glob; naming a default of the other list drops it (`--reload-include '.env'` lets `.env`
    in), and an exclude naming an existing directory leaves out everything under it. Excludes without a
    `/` are matched against every directory between the watched one and the file too, so `.*` also leaves
    out `.venv/` and `.git/`."""

    def __init__(self, roots: Iterable[str], includes: Iterable[str] = (),
                 excludes: Iterable[str] = ()) -> None:
        includes, excludes = list(includes), list(excludes)
        self.roots = [Path(root).resolve() for root in roots]
        self.includes = [glob for glob in DEFAULT_INCLUDES if glob not in excludes] + includes
        self.excludes = [glob for glob in DEFAULT_EXCLUDES if glob not in includes]
        self.exclude_dirs: list[Path] = []
        for glob in excludes:
            if os.path.isdir(glob):
                self.exclude_dirs.append(Path(glob).resolve())
            else:
                self.excludes.append(glob)

    def __call__(self, path: str) -> bool:
        where = Path(path)
        if not any(where.match(glob) for glob in self.includes):
            return False
        if any(folder == where or folder in where.parents for folder in self.exclude_dirs):
            return False
        if any(where.match(glob) for glob in self.excludes):
            return False
        return not any(fnmatch.fnmatchcase(folder, glob) for folder in self.folders(where)
                       for glob in self.excludes if "/" not in glob)

    def folders(self, where: Path) -> tuple[str, ...]:
        """The directories between the watched root holding `where` and it."""
        return self.relative(where).parts[:-1]

    def relative(self, where: Path) -> Path:
        """`where` from the watched root that holds it (as it is when none does)."""
        for root in self.roots:
            if root in where.parents:
                return where.relative_to(root)
        return where


class Watcher:
    """Watches `dirs` on a daemon thread; `wake()` is called (from that thread) after each batch of changes
    that passes the filter, and `changed()` (from the master's loop) takes the paths gathered since, each
    from its watched directory."""

    def __init__(self, dirs: Iterable[str], file_filter: FileFilter, wake: Callable[[], None]) -> None:
        self.dirs = list(dirs)
        self.filter = file_filter
        self.wake = wake
        self.lock = threading.Lock()
        self.pending: list[str] = []
        self.stop_event = threading.Event()
        # Set at watchfiles' first answer (changes, or none within WATCH_TIMEOUT_MS): from then on every
        # change is seen, which the master says once (newly_watching) so nobody edits before it.
        self.watching = threading.Event()
        self.announced = False
        self.thread = threading.Thread(target=self.watch, name="fastcluster reload watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def watch(self) -> None:
        from watchfiles import watch

        try:
            for changes in watch(*self.dirs, watch_filter=lambda change, path: self.filter(path),
                                 stop_event=self.stop_event, raise_interrupt=False,
                                 rust_timeout=WATCH_TIMEOUT_MS, yield_on_timeout=True):
                if not self.watching.is_set():
                    self.watching.set()
                    self.wake()
                if not changes:
                    continue
                with self.lock:
                    self.pending.extend(sorted({path for _, path in changes}))
                self.wake()
        except Exception as exc:  # a watched directory removed, inotify limits: say so, keep serving
            log.error("--reload: watching files stopped: %s", exc)

    def newly_watching(self) -> bool:
        """True once: the first time it is asked after the watch began."""
        if self.announced or not self.watching.is_set():
            return False
        self.announced = True
        return True

    def changed(self) -> list[str]:
        with self.lock:
            paths, self.pending = list(dict.fromkeys(self.pending)), []
        return [str(self.filter.relative(Path(path))) for path in paths]

    def close(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=1.0)
