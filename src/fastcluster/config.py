"""The settings of one `fastcluster serve`, checked once in the master before anything starts."""

from __future__ import annotations

import grp
import mimetypes
import os
import pwd
from dataclasses import dataclass, field

from fastcluster.binds import Bind
from fastcluster.core.forwarded import DEFAULT_ALLOWED
from fastcluster.cpus import (
    allowed_cpus,
    auto_worker_count,
    cgroup_cpu_limit,
    parse_cpu_list,
    pin_when_covered,
)
from fastcluster.tls import TlsSettings


class ConfigError(ValueError):
    """A setting that cannot work; its message is the one line the user sees."""


@dataclass(frozen=True)
class Limits:
    """Request limits and timeouts every connection enforces (defaults near nginx, h2o and gunicorn)."""

    max_request_line: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_chunk_extension: int = 16384
    max_body: int = 100 * 1024 * 1024
    max_pending_output: int = 256 * 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    body_timeout: float = 30.0
    write_timeout: float = 30.0
    linger_timeout: float = 2.0
    limit_concurrency: int = 0  # requests in flight per worker before new ones get 503 (0: no limit)
    ws_max_size: int = 16 * 1024 * 1024
    ws_ping_interval: float = 20.0  # 0: no keep-alive pings
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True  # offer-driven permessage-deflate (RFC 7692)
    # Open connections per worker past which new ones are closed as soon as accepted (0: no limit).
    max_connections: int = 0


@dataclass(frozen=True)
class Response:
    """The built-in responder's fixed answer."""

    body: bytes = b"Hello, World!"
    status: int = 200
    content_type: bytes = b"text/plain"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    server_header: bytes | None = b"fastcluster"
    file: str | None = None  # --response-file: read again by every worker that starts (reload picks it up)
    static: str | None = None  # --static DIR: files served at / before the built-in routes


@dataclass(frozen=True)
class Identity:
    """--user/--group: who the workers become once the master has bound the sockets."""

    uid: int | None  # None: keep the user (only --group given)
    gid: int
    name: str | None  # the user's name, for its supplementary groups


@dataclass(frozen=True)
class Manager:
    """Process-manager settings: control, supervision, recycling, metrics and logs."""

    control: str = ""  # the control socket's path ("" only before default_control_path fills it)
    pidfile: str | None = None
    timeout: float = 30.0  # a worker with no heartbeat for this long is killed and replaced
    max_requests: int = 0  # 0: never recycle on a request count
    max_requests_jitter: int = 0
    max_memory: int = 0  # MiB of RSS; 0: never recycle on memory
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None  # None: no admin listener
    access_log: str | None = None  # a path or "-" (standard output); None: off
    access_log_format: str = "common"
    identity: Identity | None = None  # None: workers keep the master's user and group
    log_file: str | None = None  # the workers' output and the master's logs; None: stderr, untouched
    log_max_size: int = 10 << 20  # rotate the log file when it would pass this many bytes
    log_backups: int = 5
    reload: Watch | None = None  # --reload: watch these files and reload the workers when they change


@dataclass(frozen=True)
class Watch:
    """--reload: the directories watched and the globs of the files that count (see reloader.FileFilter)."""

    dirs: tuple[str, ...]
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class App:
    """A user's ASGI or WSGI app to run instead of the built-in responder."""

    spec: str  # module:attribute
    app_dir: str
    factory: bool = False
    interface: str = "auto"  # auto | asgi | wsgi
    loop: str = "auto"  # auto (uvloop if it imports, else asyncio) | uvloop | asyncio
    preload: bool = False  # import it in the master before forking
    preloaded: object = None  # the app object, once --preload imported it
    root_path: str = ""
    lifespan: str = "auto"  # auto | on | off
    threads: int = 0  # WSGI: 0 runs the app in the worker's loop, N on a pool of N threads
    proxy_headers: bool = True  # X-Forwarded-For/-Proto and Forwarded from the peers below set client, scheme
    forwarded_allow_ips: str = DEFAULT_ALLOWED
    underscore_headers: bool = False  # WSGI: header names with "_" get HTTP_* keys too (else dropped)


@dataclass(frozen=True)
class Config:
    binds: list[Bind]
    workers: int
    cpus: list[int] | None  # None: --no-pin, or fewer workers than allowed CPUs and no --cpus
    balance: str = "reuseport"
    backlog: int = 2048
    graceful_timeout: float = 30.0
    drain_delay: float = 0.0  # seconds between /healthz turning 503 and the listeners closing on stop
    limits: Limits = field(default_factory=Limits)
    app: App | None = None
    response: Response = field(default_factory=Response)
    log_level: str = "info"
    log_config: str | None = None  # --log-config FILE, applied after our own logger is set up
    manager: Manager = field(default_factory=lambda: Manager())
    unpinned: str = ""  # why the workers are not pinned although --no-pin was not given
    tls: TlsSettings | None = None  # the certificates of the binds that serve https

    def cpu_for(self, slot: int) -> int | None:
        return None if self.cpus is None else self.cpus[slot % len(self.cpus)]


def choose_cpus(cpu_list: str | None, pin: bool) -> list[int] | None:
    allowed = allowed_cpus()
    if cpu_list is None:
        return allowed if pin else None
    try:
        cpus = parse_cpu_list(cpu_list)
    except ValueError as exc:
        raise ConfigError(f"--cpus: {exc}") from None
    outside = [cpu for cpu in cpus if cpu not in allowed]
    if outside:
        raise ConfigError(f"--cpus: CPU {', '.join(map(str, outside))} not in the allowed set "
                          f"{','.join(map(str, allowed))}")
    return cpus if pin else None


def choose_pinning(cpu_list: str | None, pin: bool, workers: str) -> tuple[int, list[int] | None, str]:
    """The worker count, the CPUs to pin them to (None: not pinned) and, when pinning is off though not
    asked to be, why."""
    cpus = choose_cpus(cpu_list, pin)
    count = choose_workers(workers, cpus)
    if cpu_list is not None or cpus is None:
        return count, cpus, ""
    return (count, *pin_when_covered(count, cpus))


def choose_workers(workers: str, cpus: list[int] | None) -> int:
    if workers == "auto":
        return auto_worker_count(cpus if cpus is not None else allowed_cpus(), cgroup_cpu_limit())
    if not workers.isdigit() or int(workers) < 1:
        raise ConfigError(f"--workers: expected a positive number or 'auto', got {workers!r}")
    return int(workers)


def parse_header(text: str) -> tuple[bytes, bytes]:
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    token_chars = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    if not colon or not name or not set(name) <= token_chars:
        raise ConfigError(f"--response-header: expected 'Name: value', got {text!r}")
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(f"--response-header: value of {name} contains CR, LF or NUL")
    if name.lower() in ("content-length", "transfer-encoding", "connection", "date"):
        raise ConfigError(f"--response-header: {name} is set by the server")
    return name.encode("latin-1"), value.encode("latin-1")


def build_response(*, body: str | None, file: str | None, size: int | None, status: int,
                   headers: list[str], server_header: str | None, static: str | None = None) -> Response:
    if sum(option is not None for option in (body, file, size)) > 1:
        raise ConfigError("--response-body, --response-file and --response-size exclude each other")
    if not 100 <= status <= 599 or 100 <= status < 200 or status in (204, 304):
        raise ConfigError(f"--response-status: {status} is not a status the responder can answer with "
                          "(200-599, not 204 or 304)")
    if static is not None and not os.path.isdir(static):
        raise ConfigError(f"--static: {static} is not a directory")
    content_type = b"text/plain"
    if body is not None:
        payload = body.encode()
    elif file is not None:
        try:
            with open(file, "rb") as handle:
                payload = handle.read()
        except OSError as exc:
            raise ConfigError(f"--response-file: cannot read {file}: {exc.strerror}") from None
        content_type = (mimetypes.guess_type(file)[0] or "application/octet-stream").encode()
    elif size is not None:
        if size < 0:
            raise ConfigError(f"--response-size: {size} is negative")
        payload = (b"0123456789abcdefghijklmnopqrstuvwxyz\n" * (size // 37 + 1))[:size]
    else:
        payload = b"Hello, World!"
    return Response(
        body=payload,
        status=status,
        content_type=content_type,
        headers=tuple(parse_header(text) for text in headers),
        server_header=server_header.encode("latin-1") if server_header else None,
        file=file,
        static=os.path.abspath(static) if static is not None else None,
    )


def choose_identity(user: str | None, group: str | None) -> Identity | None:
    """The user and group of --user/--group (names or numbers); the group defaults to the user's."""
    if user is None and group is None:
        return None
    flag = "--user" if user is not None else "--group"
    if os.geteuid() != 0:
        raise ConfigError(f"{flag}: only root can switch the workers' user or group")
    uid = name = None
    gid = os.getgid()
    if user is not None:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"--user: no such user {user!r}") from None
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if group is not None:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"--group: no such group {group!r}") from None
    return Identity(uid, gid, name)


def systemd_binds() -> list[Bind]:
    """Sockets passed by systemd socket activation (LISTEN_FDS for this process)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    return [Bind("fd", fd=3 + index) for index in range(count)]
