"""wsgi.input with --threads: the app's thread reads the request body while the worker's loop is still
receiving it. The loop feeds pieces in; a reader blocks until enough has come. Reading is paused while more
than LIMIT bytes wait unread, and resumed (from the reader's thread, through the loop) once they are read."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Callable

LIMIT = 256 * 1024


class BodyStream:
    def __init__(self, loop, set_reading: Callable[[bool], object]) -> None:
        self.loop = loop
        self.set_reading = set_reading
        self.ready = threading.Condition(threading.Lock())
        self.pieces: deque[bytes] = deque()
        self.buffered = 0
        self.ended = False
        self.cut_short = False
        self.paused = False
        self.unwanted = False

    # ---- the loop's side ----

    def feed(self, data: bytes) -> bool:
        """Add a piece of body; True when the reader is behind and reading should pause."""
        with self.ready:
            if self.unwanted:
                return False
            self.pieces.append(data)
            self.buffered += len(data)
            self.ready.notify_all()
            if self.buffered > LIMIT:
                self.paused = True
            return self.paused

    def end(self, complete: bool = True) -> None:
        """The body is all in, or (complete=False) the client went away before it was."""
        with self.ready:
            self.ended = True
            self.cut_short = not complete
            self.ready.notify_all()

    def drop(self) -> None:
        """The app has answered: what it did not read of the body is dropped, and reading goes on."""
        with self.ready:
            self.unwanted = True
            self.pieces.clear()
            self.buffered = 0
            paused, self.paused = self.paused, False
        if paused:
            self.set_reading(True)

    # ---- the app's side (PEP 3333 input stream) ----

    def take(self, size: int, until_newline: bool = False) -> bytes:
        """Up to size bytes (size < 0: all), or through the first newline; b"" once the body ended. When the
        body was cut short (the client left, or it broke a limit), a read that only its end would answer
        raises OSError rather than pass what came for the whole body."""
        with self.ready:
            while True:
                found = self.find_newline() if until_newline else -1
                if found >= 0:
                    wanted = found + 1 if size < 0 else min(size, found + 1)
                    break
                if 0 <= size <= self.buffered:
                    wanted = size
                    break
                if self.ended:
                    if self.cut_short:
                        raise OSError("the request body was cut short")
                    wanted = self.buffered
                    break
                self.ready.wait()
            data = self.pop(wanted)
            resume = self.paused and self.buffered <= LIMIT // 2
            if resume:
                self.paused = False
        if resume:
            self.loop.call_soon_threadsafe(self.set_reading, True)
        return data

    def find_newline(self) -> int:
        seen = 0
        for piece in self.pieces:
            at = piece.find(b"\n")
            if at >= 0:
                return seen + at
            seen += len(piece)
        return -1

    def pop(self, size: int) -> bytes:
        parts = []
        while size > 0 and self.pieces:
            piece = self.pieces.popleft()
            if len(piece) > size:
                self.pieces.appendleft(piece[size:])
                piece = piece[:size]
            parts.append(piece)
            size -= len(piece)
            self.buffered -= len(piece)
        return b"".join(parts)

    def read(self, size: int | None = -1) -> bytes:
        return self.take(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        return self.take(-1 if size is None else size, until_newline=True)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line
