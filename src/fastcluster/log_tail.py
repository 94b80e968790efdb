"""`fastcluster logs`: the last lines of a server's log file, then, with --follow, each line as it is
written, across rotations (as `tail -F` and `pm2 logs` do)."""

from __future__ import annotations

import os
import sys
import time

#: How often a followed file is checked for new lines or a rotation.
POLL_EVERY = 0.2
BLOCK = 65536


def show_log(path: str, lines: int, follow: bool) -> None:
    """Print the last `lines` lines of path; with follow, keep printing until interrupted."""
    with open(path, "rb") as handle:
        out = sys.stdout.buffer
        out.write(last_lines(handle, lines))
        out.flush()
        if not follow:
            return
        handle.seek(0, os.SEEK_END)
        while True:
            data = handle.read()
            if data:
                out.write(data)
                out.flush()
            elif rotated(path, handle):
                handle.close()  # what was written before the rotation has been read above
                handle = open(path, "rb")
                continue
            else:
                time.sleep(POLL_EVERY)


def last_lines(handle, count: int) -> bytes:
    """The last `count` lines of an open file, read backwards a block at a time."""
    if count == 0:
        return b""
    end = handle.seek(0, os.SEEK_END)
    data = b""
    position = end
    while position > 0 and data.count(b"\n") <= count:
        position = max(0, position - BLOCK)
        handle.seek(position)
        data = handle.read(end - position)
    handle.seek(end)
    return b"".join(data.splitlines(keepends=True)[-count:])


def rotated(path: str, handle) -> bool:
    """path is now another file (renamed away and created again) or was truncated."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False  # between the rename and the new file: look again later
    mine = os.fstat(handle.fileno())
    return (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev) or now.st_size < handle.tell()
