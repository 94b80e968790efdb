"""The access log of one worker: lines formatted per request into a buffer that is written at most once a
second (or when it passes 64 KiB), so logging costs no syscall per request. Off unless --access-log is
given; SIGUSR1 reopens the file (for logrotate)."""

from __future__ import annotations

import json
import os
import time

FORMATS = ("common", "combined", "json")
FLUSH_AT = 65536


class AccessLog:
    def __init__(self, path: str, log_format: str = "common") -> None:
        if log_format not in FORMATS:
            raise ValueError(f"unknown access log format {log_format!r}")
        self.path = path
        self.format = log_format
        self.wants_headers = log_format != "common"
        self.fd = -1
        self.lines: list[str] = []
        self.size = 0
        self.reopen_requested = False
        self.timestamp = ""
        self.iso_timestamp = ""
        self.open()
        self.tick(time.time())

    def open(self) -> None:
        """Open (or reopen) the file; '-' is standard output."""
        if self.path == "-":
            self.fd = 1
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if self.fd > 2:
            os.close(self.fd)
        self.fd = fd

    def log(self, conn, method: bytes, target: bytes, version: str, status: int, size: int,
            referer: bytes | None, user_agent: bytes | None, remote: str | None = None) -> None:
        """remote: the client as the app's adapter resolved it (from proxy headers); None: the peer."""
        if remote is not None:
            peer = printable(remote.encode("latin-1", "replace"))
        else:
            if conn.peer is None:
                conn.client_address()  # looks the peer up once per connection
            peer = conn.peer
        request = f"{method.decode('latin-1')} {printable(target)} HTTP/{version}"
        if self.format == "json":
            line = json.dumps({
                "time": self.iso_timestamp, "remote": peer, "method": method.decode("latin-1"),
                "target": target.decode("latin-1"), "version": version, "status": status, "bytes": size,
                "referer": referer.decode("latin-1") if referer else None,
                "user_agent": user_agent.decode("latin-1") if user_agent else None,
            }) + "\n"
        else:
            line = f'{peer} - - [{self.timestamp}] "{request}" {status} {size}'
            if self.format == "combined":
                line += f' "{printable(referer or b"-")}" "{printable(user_agent or b"-")}"'
            line += "\n"
        self.lines.append(line)
        self.size += len(line)
        if self.size >= FLUSH_AT:
            self.flush()

    def tick(self, wall_time: float) -> None:
        """Once a second: new timestamps, write what is buffered, reopen if asked."""
        local = time.localtime(wall_time)
        self.timestamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", local)
        self.iso_timestamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", local)
        self.flush()
        if self.reopen_requested:
            self.reopen_requested = False
            self.open()

    def flush(self) -> None:
        if not self.lines:
            return
        data = "".join(self.lines).encode("utf-8", errors="replace")
        self.lines.clear()
        self.size = 0
        while data:
            try:
                written = os.write(self.fd, data)
            except InterruptedError:
                continue
            except OSError:
                return  # a full disk or closed pipe must not stop the worker from serving
            data = data[written:]


def printable(raw: bytes) -> str:
    """A request field as log text: no quote, backslash or control character gets through raw."""
    text = raw.decode("latin-1")
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch not in '"\\' else f"\\x{ord(ch):02x}" for ch in text)
