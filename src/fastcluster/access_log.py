"""The access log of one worker: lines formatted per request into a buffer that is written at most once a
second (or when it passes 64 KiB), so logging costs no syscall per request. Off unless --access-log is
given; SIGUSR1 reopens the file (for logrotate). A format (common, combined, or a gunicorn-style string of
%(atom)s) is compiled once into a %-template and a list of field getters; json is one object per line."""

from __future__ import annotations

import binascii
import json
import os
import re
import time
from collections.abc import Callable, Mapping

FLUSH_AT = 65536
NAMED_FORMATS = {
    "common": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s',
    "combined": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
}
ATOM = re.compile(r"%\(([A-Za-z]|\{[^}]*\}[A-Za-z])\)s")


class FormatError(ValueError):
    """A --access-log-format the log cannot write."""


class Entry:
    """The facts of one answered request that the atoms of a format read."""

    __slots__ = ("peer", "method", "target", "version", "status", "body_size", "duration", "headers",
                 "response_headers")

    def __init__(self, peer: str, method: bytes, target: bytes, version: str, status: int, body_size: int,
                 duration: float, headers: Mapping[bytes, bytes] | None, response_headers=None) -> None:
        self.peer = peer
        self.method = method
        self.target = target
        self.version = version
        self.status = status
        self.body_size = body_size
        self.duration = duration
        self.headers = headers
        self.response_headers = response_headers

    def header(self, name: bytes) -> str:
        value = self.headers.get(name) if self.headers is not None else None
        return printable(value) if value else "-"

    def response_header(self, name: bytes) -> str:
        value = response_header(self.response_headers, name)
        return printable(value) if value else "-"

    def environ(self, name: str) -> str:
        """A WSGI environ value (only a WSGI app's requests have an environ)."""
        value = self.headers.environ.get(name) if isinstance(self.headers, EnvironHeaders) else None
        return printable(str(value).encode("latin-1", "replace")) if value is not None else "-"


Getter = Callable[[Entry], str]


class AccessLog:
    def __init__(self, path: str, log_format: str = "common") -> None:
        self.path = path
        self.format = log_format
        self.pid = os.getpid()
        self.template, self.getters, self.header_names = compile_format(self, log_format)
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

    def log(self, conn, method: bytes, target: bytes, version: str, status: int, body_size: int,
            started: float, headers: Mapping[bytes, bytes] | None, remote: str | None = None,
            response_headers=None) -> None:
        """One answered request; started is its CLOCK_MONOTONIC start, headers the request headers by
        lower-cased name (only those in header_names are read), remote the client as the app's adapter
        resolved it from proxy headers (None: the peer), response_headers the app's (name, value) pairs or
        the head of a built-in answer as bytes (read only by %({name}o)s atoms)."""
        if remote is not None:
            peer = printable(remote.encode("latin-1", "replace"))
        else:
            if conn.peer is None:
                conn.client_address()  # looks the peer up once per connection
            peer = conn.peer
        entry = Entry(peer, method, target, version, status, body_size, time.monotonic() - started, headers,
                      response_headers)
        if self.getters is None:
            line = self.json_line(entry)
        else:
            line = self.template % tuple([getter(entry) for getter in self.getters])
        self.lines.append(line)
        self.size += len(line)
        if self.size >= FLUSH_AT:
            self.flush()

    def json_line(self, entry: Entry) -> str:
        headers = entry.headers if entry.headers is not None else {}
        referer, user_agent = headers.get(b"referer"), headers.get(b"user-agent")
        return json.dumps({
            "time": self.iso_timestamp, "remote": entry.peer, "method": entry.method.decode("latin-1"),
            "target": entry.target.decode("latin-1"), "version": entry.version, "status": entry.status,
            "bytes": entry.body_size, "duration": round(entry.duration, 6),
            "referer": referer.decode("latin-1") if referer else None,
            "user_agent": user_agent.decode("latin-1") if user_agent else None,
        }) + "\n"

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


def compile_format(log: AccessLog | None,
                   log_format: str) -> tuple[str, list[Getter] | None, frozenset[bytes]]:
    """log_format compiled: a %-template of its text with one %s per atom and a line end, the getters of
    those atoms (None for json), and the request headers they read. A format that is not common, combined
    or json and holds no %(atom)s, or that names an atom we do not have, is a FormatError."""
    if log_format == "json":
        return "", None, frozenset((b"referer", b"user-agent"))
    text = NAMED_FORMATS.get(log_format, log_format)
    if not ATOM.search(text):
        raise FormatError(f"unknown access log format {log_format!r}: give common, combined, json "
                          "or a string of %(atom)s such as '%(h)s \"%(r)s\" %(s)s %(D)s'")
    pieces: list[str] = []
    getters: list[Getter] = []
    names: set[bytes] = set()
    position = 0
    for match in ATOM.finditer(text):
        pieces.append(literal(text[position:match.start()]))
        getter, header = atom_getter(log, match.group(1))
        if isinstance(getter, str):
            pieces.append(literal(getter))  # an atom that is always the same text costs nothing per line
        else:
            pieces.append("%s")
            getters.append(getter)
        if header is not None:
            names.add(header)
        position = match.end()
    pieces.append(literal(text[position:] + "\n"))
    return "".join(pieces), getters, frozenset(names)


def literal(text: str) -> str:
    """Format text (where %% is a percent sign) as it stands in a %-template."""
    return text.replace("%%", "%").replace("%", "%%")


def atom_getter(log: AccessLog | None, atom: str) -> tuple[Getter | str, bytes | None]:
    """The getter of one atom (or its text, when it never changes), and the request header it reads."""
    if atom.startswith("{"):
        name, kind = atom[1:-2], atom[-1]
        if kind not in "ioe" or not name:
            raise FormatError(f"access log atom %({atom})s: give %({{header}}i)s (request header), "
                              "%({header}o)s (response header) or %({variable}e)s (WSGI environ)")
        if kind == "e":
            return (lambda entry: entry.environ(name)), None
        header = name.lower().encode("latin-1")
        if kind == "o":
            return (lambda entry: entry.response_header(header)), None
        return (lambda entry: entry.header(header)), header
    if atom == "u":
        return basic_user, b"authorization"
    if atom == "f":
        return (lambda entry: entry.header(b"referer")), b"referer"
    if atom == "a":
        return (lambda entry: entry.header(b"user-agent")), b"user-agent"
    if atom == "t":
        return (lambda entry: f"[{log.timestamp}]"), None
    if atom == "p":
        return (lambda entry: f"<{log.pid}>"), None
    if atom not in ATOMS:
        raise FormatError(f"unknown access log atom %({atom})s (known: {' '.join(ATOM_NAMES)})")
    return ATOMS[atom], None


def basic_user(entry: Entry) -> str:
    """The user name of Basic authentication, as gunicorn logs it (`-` without)."""
    headers = entry.headers
    given = headers.get(b"authorization") if headers is not None else None
    if not given or given[:6].lower() != b"basic ":
        return "-"
    try:
        name = binascii.a2b_base64(given[6:].strip()).partition(b":")[0]
    except binascii.Error:
        return "-"
    return printable(name) if name else "-"


def request_line(entry: Entry) -> str:
    return f"{entry.method.decode('latin-1')} {printable(entry.target)} HTTP/{entry.version}"


ATOMS: dict[str, Getter | str] = {
    "h": lambda entry: entry.peer,
    "l": "-",
    "r": request_line,
    "m": lambda entry: entry.method.decode("latin-1"),
    "U": lambda entry: printable(entry.target.partition(b"?")[0]),
    "q": lambda entry: printable(entry.target.partition(b"?")[2]),
    "H": lambda entry: f"HTTP/{entry.version}",
    "s": lambda entry: str(entry.status),
    "B": lambda entry: str(entry.body_size),
    "b": lambda entry: str(entry.body_size) if entry.body_size else "-",
    "T": lambda entry: str(int(entry.duration)),
    "M": lambda entry: str(int(entry.duration * 1000)),
    "D": lambda entry: str(int(entry.duration * 1_000_000)),
    "L": lambda entry: f"{entry.duration:.6f}",
}
ATOM_NAMES = ("h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D", "L", "p",
              "{header}i", "{header}o", "{variable}e")


def response_header(headers, name: bytes) -> bytes | None:
    """The value of response header `name` (lower-cased) in an app's (name, value) pairs (bytes for ASGI,
    str for WSGI) or in the head of an answer written as bytes; None when absent."""
    if headers is None:
        return None
    if isinstance(headers, bytes):
        for line in headers.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None
    for key, value in headers:
        if isinstance(key, str):
            key, value = key.encode("latin-1", "replace"), str(value).encode("latin-1", "replace")
        if key.lower() == name:
            return value
    return None


class EnvironHeaders:
    """A WSGI environ's request headers read by lower-cased name, as the log's atoms ask for them."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict) -> None:
        self.environ = environ

    def get(self, name: bytes) -> bytes | None:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self.environ.get(key)
        return value.encode("latin-1") if value is not None else None


def printable(raw: bytes) -> str:
    """A request field as log text: no quote, backslash or control character gets through raw."""
    text = raw.decode("latin-1")
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch not in '"\\' else f"\\x{ord(ch):02x}" for ch in text)
