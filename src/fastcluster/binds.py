"""Listening addresses: parsing --bind values and making the sockets the master owns."""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Bind:
    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    mode: int = 0o666  # unix: the socket file's permissions (--uds-mode)
    # "https": the bind serves TLS; "http": plain; "": not said (TLS when --ssl-certfile is given).
    scheme: str = ""

    def __str__(self) -> str:
        prefix = "https://" if self.scheme == "https" else ""
        if self.kind == "unix":
            return f"{prefix}unix:{self.path}"
        if self.kind == "fd":
            return f"{prefix}fd://{self.fd}"
        return prefix + (f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}")

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def parse_bind(text: str) -> Bind:
    """'HOST:PORT', '[V6]:PORT', 'unix:PATH' or 'fd://N', each optionally after 'https://' (serve TLS) or
    'http://' (plain); ValueError with a readable reason otherwise."""
    for scheme in ("https", "http"):
        if text.startswith(scheme + "://") and not text.startswith("fd://"):
            return replace(parse_bind(text[len(scheme) + 3:]), scheme=scheme)
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError(f"bind {text!r} has no path")
        return Bind("unix", path=text[5:])
    if text.startswith("fd://"):
        if not text[5:].isdigit():
            raise ValueError(f"bind {text!r}: expected fd://N")
        return Bind("fd", fd=int(text[5:]))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"bind {text!r}: expected [IPv6]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"bind {text!r}: expected HOST:PORT, unix:PATH or fd://N")
    return Bind("tcp", host=host or "0.0.0.0", port=parse_port(port))


def parse_port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"port {text!r} is not a number from 0 to 65535")
    return int(text)


def resolve_host(bind: Bind) -> Bind:
    """A host name becomes the first address it resolves to (sockets bind addresses, not names)."""
    if bind.kind != "tcp":
        return bind
    try:
        socket.inet_pton(bind.family, bind.host)
        return bind
    except OSError:
        pass
    try:
        family, _, _, _, address = socket.getaddrinfo(bind.host, bind.port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {bind.host!r}: {exc.strerror}") from None
    return replace(bind, host=address[0])


def check_port_free(bind: Bind) -> None:
    """Raise if another process listens on bind's port, even one using SO_REUSEPORT (that would share it)."""
    probe = socket.socket(bind.family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((bind.host, bind.port))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot bind {bind}: {exc.strerror}") from None
    finally:
        probe.close()


def open_tcp(bind: Bind, backlog: int, reuseport: bool) -> socket.socket:
    sock = socket.socket(bind.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if bind.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((bind.host, bind.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {bind}: {exc.strerror}") from None
    return sock


def open_unix(bind: Bind, backlog: int) -> socket.socket:
    remove_stale_socket(bind)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(bind.path)
        os.chmod(bind.path, bind.mode)  # exactly --uds-mode, whatever the umask
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {bind}: {exc.strerror}") from None
    return sock


def remove_stale_socket(bind: Bind) -> None:
    """Remove a socket file left by a server that is gone; refuse to touch anything else."""
    try:
        mode = os.lstat(bind.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"cannot bind {bind}: {bind.path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        failed = probe.connect_ex(bind.path)
    if failed == 0:
        raise OSError(errno.EADDRINUSE, f"cannot bind {bind}: another process listens on {bind.path}")
    if failed != errno.ECONNREFUSED:
        raise OSError(failed, f"cannot bind {bind}: cannot check {bind.path}: {os.strerror(failed)}")
    os.unlink(bind.path)


def adopt_fd(bind: Bind) -> socket.socket:
    """A listening socket handed to us already open (fd://N, systemd socket activation)."""
    try:
        sock = socket.socket(fileno=bind.fd)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot use {bind}: {exc.strerror}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise OSError(errno.EINVAL, f"cannot use {bind}: not a listening stream socket")
    sock.setblocking(False)
    return sock


def bound_port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def listens_on(sock: socket.socket, bind: Bind) -> bool:
    """Whether sock is the (resolved, port-assigned) bind's listening socket."""
    if bind.kind == "fd":
        return sock.fileno() == bind.fd
    if bind.kind == "unix":
        return sock.family == socket.AF_UNIX and sock.getsockname() == bind.path
    if sock.family == socket.AF_UNIX or sock.getsockname()[1] != bind.port:
        return False
    return socket.inet_pton(sock.family, sock.getsockname()[0]) == socket.inet_pton(bind.family, bind.host)
