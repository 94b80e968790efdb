"""The master's log file (--log-file): what the workers write to stdout and stderr comes to the master
through one pipe per worker (set up at fork) and is written line by line, each line tagged with the
worker's slot and pid, together with the master's own log records; the file is rotated by size
(--log-max-size, --log-backups) and reopened on USR1, as pm2 keeps its logs."""

from __future__ import annotations

import logging
import os
import select
import sys

#: What one read of a worker's pipe takes at most; a line longer than this is written in pieces.
READ_SIZE = 65536


class LogFile:
    """An append-only file rotated to PATH.1 … PATH.N when a write would take it past max_size."""

    def __init__(self, path: str, max_size: int, backups: int) -> None:
        self.path = os.path.abspath(path)
        self.max_size = max_size
        self.backups = backups
        self.fd = -1
        self.size = 0
        self.open()

    def open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def write(self, lines: list[bytes]) -> None:
        """Whole lines (each ending in a newline), in as few writes as the size limit allows."""
        start = 0
        size = self.size
        for end, line in enumerate(lines):
            if size and size + len(line) > self.max_size:
                if end > start:
                    self.append(b"".join(lines[start:end]))
                self.rotate()
                start, size = end, 0
            size += len(line)
        self.append(b"".join(lines[start:]))

    def append(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)  # one write: whole lines, never mixed with another source's
        except OSError:
            return  # a full disk must not stop the master
        self.size += len(data)

    def rotate(self) -> None:
        """PATH.N-1 → PATH.N … PATH → PATH.1 (the oldest beyond --log-backups dropped), then a new PATH."""
        try:
            if self.backups == 0:
                os.unlink(self.path)
            for index in range(self.backups - 1, 0, -1):
                if os.path.exists(f"{self.path}.{index}"):
                    os.replace(f"{self.path}.{index}", f"{self.path}.{index + 1}")
            if self.backups:
                os.replace(self.path, f"{self.path}.1")
            self.open()
        except OSError:
            self.size = 0  # cannot rotate (a read-only directory?): keep appending rather than lose lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class WorkerOutput:
    """The read end of one worker's stdout/stderr pipe, and the unfinished line it last ended with."""

    def __init__(self, fd: int, slot: int, pid: int) -> None:
        self.fd = fd
        self.tag = f"worker {slot} pid {pid} | ".encode()
        self.partial = b""

    def read(self, log_file: LogFile) -> bool:
        """Write the complete lines waiting in the pipe; False at end of file (the worker is gone)."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self.flush(log_file)
            return False
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) >= READ_SIZE:  # no newline in sight: do not hold it any longer
            lines.append(self.partial)
            self.partial = b""
        if lines:
            log_file.write([self.tag + line + b"\n" for line in lines])
        return True

    def flush(self, log_file: LogFile) -> None:
        if self.partial:
            log_file.write([self.tag + self.partial + b"\n"])
            self.partial = b""


class Collector:
    """Every worker's output pipe, read by the master's loop into the log file; the master's own log
    records (the handlers of the `fastcluster` logger that write to stderr) go there too."""

    def __init__(self, log_file: LogFile) -> None:
        self.log_file = log_file
        self.outputs: dict[int, WorkerOutput] = {}  # by read fd
        ours = logging.getLogger("fastcluster")
        self.swapped = [(index, handler) for index, handler in enumerate(ours.handlers)
                        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr]
        for index, handler in self.swapped:
            ours.handlers[index] = MasterHandler(log_file, handler.formatter, handler.level)

    def pipe(self) -> tuple[int, int]:
        """A new pipe for a worker about to be forked: (read end, write end)."""
        return os.pipe2(os.O_CLOEXEC)

    def started(self, read_fd: int, write_fd: int, slot: int, pid: int) -> None:
        """In the master after the fork: keep the read end, close the worker's end."""
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.outputs[read_fd] = WorkerOutput(read_fd, slot, pid)

    def in_worker(self, read_fd: int, write_fd: int) -> None:
        """In the new worker: its stdout and stderr become the pipe (print() flushed by line), its log
        records go to stderr again, and no other worker's pipe stays open."""
        for fd in (read_fd, *self.outputs):
            os.close(fd)
        self.log_file.close()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        if sys.stdout is not None:
            sys.stdout.reconfigure(line_buffering=True)
        ours = logging.getLogger("fastcluster")
        for index, handler in self.swapped:
            ours.handlers[index] = handler

    def fds(self) -> list[int]:
        return list(self.outputs)

    def read(self, ready: set[int]) -> None:
        for fd in [fd for fd in self.outputs if fd in ready]:
            if not self.outputs[fd].read(self.log_file):
                del self.outputs[fd]
                os.close(fd)

    def close(self) -> None:
        """At exit (every worker reaped): what they left in their pipes, then the master's logs to stderr."""
        for fd, output in self.outputs.items():
            while output.read(self.log_file) and select.select([fd], [], [], 0)[0]:
                pass
            output.flush(self.log_file)
            os.close(fd)
        self.outputs.clear()
        ours = logging.getLogger("fastcluster")
        for index, handler in self.swapped:
            ours.handlers[index] = handler
        self.log_file.close()


class MasterHandler(logging.Handler):
    """The master's own log records into the log file, tagged like the workers' lines."""

    def __init__(self, log_file: LogFile, formatter: logging.Formatter | None, level: int) -> None:
        super().__init__(level)
        self.log_file = log_file
        self.tag = f"master pid {os.getpid()} | ".encode()
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = self.format(record).encode(errors="replace").split(b"\n")
        except Exception:
            self.handleError(record)
            return
        self.log_file.write([self.tag + line + b"\n" for line in lines])
