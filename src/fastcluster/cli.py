"""The `fastcluster` command: parses flags into a Config and hands it to the master."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
from collections.abc import Callable

from fastcluster import __version__, settings
from fastcluster.access_log import FormatError, compile_format
from fastcluster.binds import Bind, parse_bind, parse_port
from fastcluster.config import (
    App,
    Config,
    ConfigError,
    Limits,
    Manager,
    Watch,
    build_response,
    choose_identity,
    choose_pinning,
    systemd_binds,
)
from fastcluster.control import ControlError, find_control_path, request
from fastcluster.core.forwarded import DEFAULT_ALLOWED, ProxyHeaders
from fastcluster.habits import add_habits
from fastcluster.log_tail import show_log
from fastcluster.logs import setup_logging
from fastcluster.settings import ReplacingAppend
from fastcluster.status import render_status
from fastcluster.tls import TlsSettings, parse_sni
from fastcluster.tls import check as check_tls

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one readable line and exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "append", ReplacingAppend)

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(message)


def fail(message: str) -> None:
    print(f"fastcluster: error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return value


def heartbeat_timeout(text: str) -> float:
    value = positive_float(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(
            f"expected more than 1 second (workers beat once a second), got {text!r}")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def whole_number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def size(text: str) -> int:
    """A byte count: 1048576, 1m, 64k, 1g."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    number, unit = (text[:-1], units[text[-1].lower()]) if text[-1:].lower() in units else (text, 1)
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"expected a size like 1048576, 64k or 1m, got {text!r}")
    return int(number) * unit


def access_log_format(text: str) -> str:
    try:
        compile_format(None, text)
    except FormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def octal_mode(text: str) -> int:
    """File permissions or a umask, in octal: 022, 0o660."""
    try:
        value = int(text[2:] if text.lower().startswith("0o") else text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"expected an octal mode from 000 to 777 like 022 or 0660, "
                                         f"got {text!r}")
    return value


octal_mode.octal = True  # type: ignore[attr-defined]  # settings: a TOML number is refused, shown as "0660"


def add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve HTTP on every core")
    settings = serve.add_argument_group("settings")
    settings.add_argument("--config", metavar="FILE", help="read settings from this TOML file "
                          "(flags > FASTCLUSTER_* environment > file > defaults)")
    settings.add_argument("--server", metavar="NAME", help="use the file's [servers.NAME] table")
    settings.add_argument("--env-file", metavar="FILE",
                          help="load KEY=VALUE lines into the environment of the master and workers")
    serve.add_argument("app", nargs="?", metavar="APP",
                       help="an ASGI or WSGI app as module:attribute; none: the built-in responder answers")
    apps = serve.add_argument_group("apps")
    apps.add_argument("--app-dir", default=".", metavar="DIR",
                      help="directory put first on sys.path to import APP from (default: the current one)")
    apps.add_argument("--factory", action="store_true", help="APP is a factory: call it to get the app")
    apps.add_argument("--interface", choices=["auto", "asgi", "wsgi"], default="auto",
                      help="auto: an async callable is ASGI, anything else WSGI")
    apps.add_argument("--preload", action="store_true",
                      help="import APP in the master before forking (shared copy-on-write)")
    apps.add_argument("--root-path", default="", metavar="PATH", help="ASGI root_path / WSGI SCRIPT_NAME")
    apps.add_argument("--lifespan", choices=["auto", "on", "off"], default="auto",
                      help="ASGI lifespan events (auto: used when the app supports them)")
    apps.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto",
                      help="the event loop apps run on (auto: uvloop, installed with fastcluster, unless it "
                           "cannot be imported; then asyncio's)")
    apps.add_argument("--threads", type=int, default=0, metavar="N",
                      help="WSGI: run requests on N threads per worker (default 0: in the worker's loop)")
    apps.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=True,
                      help="take the client and scheme from X-Forwarded-For, X-Forwarded-Proto or Forwarded "
                           "when the peer is in --forwarded-allow-ips (default: on)")
    apps.add_argument("--forwarded-allow-ips", metavar="LIST",
                      help="comma-separated IPs and networks trusted with proxy headers, 'unix:' for "
                           "Unix-socket peers, '*' for all "
                           f"(default: $FORWARDED_ALLOW_IPS, else {DEFAULT_ALLOWED})")
    apps.add_argument("--allow-underscore-headers", action="store_true",
                      help="WSGI: pass headers whose names have '_' (dropped by default: "
                           "X_Forwarded_For would pass for X-Forwarded-For)")
    apps.add_argument("--chdir", metavar="DIR", help="change to DIR before anything is loaded")
    where = serve.add_argument_group("sockets")
    where.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    where.add_argument("--port", type=port, default=8000, help="port to listen on (default 8000)")
    where.add_argument("--bind", action="append", default=[], metavar="ADDR",
                       help="HOST:PORT, [V6]:PORT, unix:PATH or fd://N; repeatable; replaces --host/--port")
    where.add_argument("--uds-mode", type=octal_mode, default=0o666, metavar="MODE",
                       help="permissions of unix: sockets (default 0666: any local user, e.g. nginx, "
                            "may connect)")
    where.add_argument("--backlog", type=positive_int, default=2048, help="listen backlog (default 2048)")
    where.add_argument("--balance", choices=["reuseport", "shared"], default="reuseport",
                       help="one SO_REUSEPORT socket per worker (default) or one socket for all")

    procs = serve.add_argument_group("processes")
    procs.add_argument("--workers", default="auto", help="number of workers, or auto (default: usable CPUs)")
    procs.add_argument("--cpus", help="CPUs to pin workers to, e.g. 0-3,8 (default: all allowed)")
    procs.add_argument("--no-pin", action="store_true", help="do not pin workers to CPUs")
    procs.add_argument("--graceful-timeout", type=positive_float, default=30.0,
                       help="seconds to finish in-flight requests on stop (default 30)")
    procs.add_argument("--drain-delay", type=non_negative_float, default=0.0, metavar="S",
                       help="on stop, answer /healthz 503 and keep serving for S seconds before closing the "
                            "listeners, so load balancers stop sending first (default 0)")
    procs.add_argument("--user", metavar="USER", help="workers run as USER (name or uid) after the sockets "
                       "are bound; needs root")
    procs.add_argument("--group", metavar="GROUP", help="workers run with GROUP (default: USER's group)")
    procs.add_argument("--umask", type=octal_mode, metavar="MASK", help="file mode mask of the server, octal")
    procs.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    procs.add_argument("--log-config", metavar="FILE",
                       help="logging configuration: dictConfig as .json, .yaml or .toml, else INI fileConfig")

    answer = serve.add_argument_group("built-in responder")
    answer.add_argument("--response-body", metavar="TEXT", help="body of the fixed answer")
    answer.add_argument("--response-file", metavar="PATH", help="answer with this file's bytes")
    answer.add_argument("--response-size", type=size, metavar="N", help="answer with N bytes")
    answer.add_argument("--response-status", type=int, metavar="CODE", help="its status (default 200)")
    answer.add_argument("--response-header", action="append", default=[], metavar="'Name: value'")
    answer.add_argument("--static", metavar="DIR",
                        help="serve the files under DIR at /; built-in routes answer where no file matches")
    server = answer.add_mutually_exclusive_group()
    server.add_argument("--server-header", default="fastcluster", metavar="VALUE",
                        help="Server header value (default fastcluster)")
    server.add_argument("--no-server-header", dest="server_header", action="store_const", const=None)

    manage = serve.add_argument_group("process manager")
    manage.add_argument("--control", metavar="PATH",
                        help="control socket for status/reload/scale/stop (default: "
                             "fastcluster-HOST-PORT.sock in /run/fastcluster for root, else in a private "
                             "directory)")
    manage.add_argument("--pidfile", metavar="PATH", help="write the master's pid to PATH")
    manage.add_argument("--timeout", type=heartbeat_timeout, default=30.0, metavar="S",
                        help="kill and replace a worker silent (no heartbeat) for S seconds (default 30)")
    manage.add_argument("--max-requests", type=positive_int, default=0, metavar="N",
                        help="replace a worker gracefully after N requests (default: never)")
    manage.add_argument("--max-requests-jitter", type=whole_number, default=0, metavar="J",
                        help="add 0..J to --max-requests per worker, so they do not all recycle at once")
    manage.add_argument("--max-memory", type=positive_int, default=0, metavar="MB",
                        help="replace a worker gracefully when its RSS passes MB MiB (default: never)")
    manage.add_argument("--admin-port", type=port, metavar="PORT",
                        help="serve /metrics and /healthz on this port (default: off)")
    manage.add_argument("--admin-host", default="127.0.0.1", metavar="HOST",
                        help="address of the admin listener (default 127.0.0.1)")
    manage.add_argument("--access-log", metavar="PATH|-", help="log each request to PATH or - (stdout); "
                        "default off. SIGUSR1 reopens it")
    manage.add_argument("--access-log-format", type=access_log_format, default="common", metavar="FORMAT",
                        help="common (default), combined, json, or gunicorn-style atoms such as "
                        "'%%(h)s \"%%(r)s\" %%(s)s %%(b)s %%(D)s' (see README)")

    tls = serve.add_argument_group("TLS (https)")
    tls.add_argument("--ssl-certfile", metavar="PATH",
                     help="certificate chain (PEM): every bind not written http:// serves https")
    tls.add_argument("--ssl-keyfile", metavar="PATH", help="its private key (default: in the certfile)")
    tls.add_argument("--ssl-keyfile-password", metavar="TEXT", help="password of an encrypted key")
    tls.add_argument("--ssl-ca-certs", metavar="PATH", help="CA certificates to verify clients with")
    tls.add_argument("--ssl-cert-reqs", choices=["none", "optional", "required"],
                     default=TlsSettings.cert_reqs,
                     help="client certificates: not asked for (default), verified when sent, required")
    tls.add_argument("--ssl-ciphers", metavar="LIST", help="OpenSSL cipher list for TLS 1.2")
    tls.add_argument("--ssl-min-version", choices=["TLSv1.2", "TLSv1.3"], default=TlsSettings.min_version,
                     help="oldest TLS version accepted (default TLSv1.2)")
    tls.add_argument("--ssl-sni", action="append", default=[], metavar="NAME=CERT:KEY",
                     help="serve this certificate to clients asking for NAME (repeatable; *.domain too)")
    tls.add_argument("--ssl-ticket-key-lifetime", type=positive_float,
                     default=TlsSettings.ticket_key_lifetime, metavar="SECONDS",
                     help="how long a session ticket key opens tickets; a new key seals them every half of "
                     "it (default 43200: 12 h)")
    tls.add_argument("--ssl-ktls", action=argparse.BooleanOptionalAction, default=TlsSettings.ktls,
                     help="let the kernel encrypt (kernel TLS, sendfile for files) where it offers it "
                     "(default on)")
    limits = serve.add_argument_group("limits and timeouts")
    defaults = Limits()
    limits.add_argument("--max-request-line", type=size, default=defaults.max_request_line, metavar="BYTES")
    limits.add_argument("--max-header-bytes", type=size, default=defaults.max_header_bytes, metavar="BYTES")
    limits.add_argument("--max-headers", type=positive_int, default=defaults.max_headers, metavar="N")
    limits.add_argument("--limit-connections", type=positive_int, default=defaults.max_connections,
                        metavar="N", help="open connections per worker; past N, a new connection is "
                        "closed as soon as accepted (default: no limit)")
    limits.add_argument("--max-body", type=size, default=defaults.max_body, metavar="BYTES",
                        help="largest request body (default 100m); larger gets 413")
    limits.add_argument("--limit-concurrency", type=positive_int, default=defaults.limit_concurrency,
                        metavar="N",
                        help="requests in flight per worker past which new ones get 503 (default: no limit)")
    limits.add_argument("--header-timeout", type=positive_float, default=defaults.header_timeout,
                        metavar="S", help="time to receive a request head, from its first byte (408)")
    limits.add_argument("--keepalive-timeout", type=positive_float, default=defaults.keepalive_timeout,
                        metavar="S", help="idle time before a keep-alive connection is closed")
    limits.add_argument("--body-timeout", type=positive_float, default=defaults.body_timeout, metavar="S",
                        help="longest pause while receiving a body (408)")
    limits.add_argument("--write-timeout", type=positive_float, default=defaults.write_timeout, metavar="S",
                        help="longest a client may leave our output unread")
    limits.add_argument("--ws-max-size", type=size, default=defaults.ws_max_size, metavar="BYTES",
                        help="largest WebSocket message (default 16m); larger closes with 1009")
    limits.add_argument("--ws-ping-interval", type=non_negative_float, default=defaults.ws_ping_interval,
                        metavar="S", help="ping an idle WebSocket after S seconds (default 20; 0: never)")
    limits.add_argument("--ws-ping-timeout", type=positive_float, default=defaults.ws_ping_timeout,
                        metavar="S", help="close a WebSocket whose pong is S seconds late (default 20)")
    limits.add_argument("--ws-per-message-deflate", action=argparse.BooleanOptionalAction,
                        default=defaults.ws_per_message_deflate,
                        help="compress WebSocket messages when the client offers permessage-deflate "
                        "(default on)")
    add_log_file_flags(serve)
    add_reload_flags(serve)


def add_reload_flags(serve: argparse.ArgumentParser) -> None:
    development = serve.add_argument_group(
        "development (needs watchfiles: pip install 'fastcluster-server[reload]')")
    development.add_argument("--reload", action="store_true",
                             help="reload the workers (rolling) when the app's files change; a change that "
                             "does not import keeps the old workers serving and shows its traceback")
    development.add_argument("--reload-dir", action="append", default=[], metavar="DIR",
                             help="a directory to watch (repeatable; default: --app-dir, so the current one)")
    development.add_argument("--reload-include", action="append", default=[], metavar="GLOB",
                             help="files that count besides *.py (repeatable)")
    development.add_argument("--reload-exclude", action="append", default=[], metavar="GLOB",
                             help="files (or a directory) that do not count, besides .*, .py[cod], .sw.* "
                             "and ~* (repeatable)")


def watch_config(args: argparse.Namespace) -> Watch | None:
    """--reload's settings, checked: a directory that is not one, or --reload-* without --reload, is an
    error; so is a missing watchfiles."""
    from fastcluster.reloader import INSTALL_HINT, watchfiles_missing

    if not args.reload:
        given = next((name for name in ("reload_dir", "reload_include", "reload_exclude")
                      if getattr(args, name)), None)
        if given:
            raise ConfigError(f"--{given.replace('_', '-')} needs --reload")
        return None
    if args.preload:
        raise ConfigError("--reload needs every new worker to import the app: drop --preload")
    if watchfiles_missing():
        raise ConfigError(INSTALL_HINT)
    dirs = args.reload_dir or [args.app_dir]
    for folder in dirs:
        if not os.path.isdir(folder):
            raise ConfigError(f"--reload-dir: {folder} is not a directory")
    return Watch(dirs=tuple(dict.fromkeys(os.path.abspath(folder) for folder in dirs)),
                 includes=tuple(args.reload_include), excludes=tuple(args.reload_exclude))


def add_log_file_flags(serve: argparse.ArgumentParser) -> None:
    logs = serve.add_argument_group("log file (read it with `fastcluster logs`)")
    logs.add_argument("--log-file", metavar="PATH",
                      help="collect the workers' stdout and stderr and the master's logs into PATH, each "
                      "line tagged with its worker's slot and pid (default: all to stderr, untagged)")
    logs.add_argument("--log-max-size", type=size, default=Manager.log_max_size, metavar="SIZE",
                      help="rotate the log file when it would pass SIZE (default 10m)")
    logs.add_argument("--log-backups", type=whole_number, default=Manager.log_backups, metavar="N",
                      help="rotated files kept, PATH.1 … PATH.N (default 5)")


def control_options(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group()
    where.add_argument("--control", metavar="PATH", help="the server's control socket")
    where.add_argument("--port", type=port, default=8000,
                       help="find the control socket of the server on this port (default 8000)")
    command.add_argument("--host", help="with --port: the server's address, when several servers "
                         "share the port")


def add_logs_command(commands: argparse._SubParsersAction) -> None:
    logs = commands.add_parser("logs", help="show (and follow) a server's --log-file")
    control_options(logs)
    logs.add_argument("--log-file", metavar="PATH",
                      help="read this file instead of asking the server for it")
    logs.add_argument("--lines", "-n", type=whole_number, default=15, metavar="N",
                      help="how many of the last lines to show first (default 15)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing lines as they are written")


def add_top_command(commands: argparse._SubParsersAction) -> None:
    top = commands.add_parser("top", help="a live view of the workers: CPU, memory, req/s, latency")
    control_options(top)
    top.add_argument("--interval", type=positive_float, default=1.0, metavar="S",
                     help="seconds between refreshes (default 1)")
    top.add_argument("--plain", action="store_true", help="plain ANSI output even when rich is installed")


def add_control_commands(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="show the workers of a running server")
    control_options(status)
    status.add_argument("--json", action="store_true", help="print the full status as JSON")
    status.add_argument("--watch", action="store_true", help="redraw the table every second until Ctrl-C")
    reload = commands.add_parser("reload", help="rolling reload: replace the workers one at a time")
    control_options(reload)
    scale = commands.add_parser("scale", help="change the number of workers")
    control_options(scale)
    scale.add_argument("workers", type=scale_count, help="N, +N or -N")
    stop = commands.add_parser("stop", help="stop the server gracefully")
    control_options(stop)
    rotate = commands.add_parser("rotate-ticket-keys", help="seal TLS session tickets with a new key now "
                                 "(tickets of the key before still resume; twice: none of the old ones)")
    control_options(rotate)


def scale_count(text: str) -> str:
    if not text.lstrip("+-").isdigit() or (text.isdigit() and int(text) < 1):
        raise argparse.ArgumentTypeError(f"expected N, +N or -N workers, got {text!r}")
    return text


def parser() -> Parser:
    top = Parser(prog="fastcluster", description="A multicore HTTP/1.1 server with a C hot path.")
    top.add_argument("--version", action="version", version=f"fastcluster {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    add_serve(commands)
    add_habits(commands.choices["serve"])
    commands.add_parser("config", help="config --show [serve flags]: print every serve setting and where "
                        "it comes from (flag, environment, file, default)")
    add_control_commands(commands)
    add_logs_command(commands)
    add_top_command(commands)
    return top


RESPONDER_FLAGS = ("static", "response_body", "response_file", "response_size", "response_status",
                   "response_header")


def app_config(args: argparse.Namespace) -> App | None:
    """The app to run. It is imported later: in each worker (a broken one fails once, with its traceback,
    and exit 2; see Master.cannot_start), or with --preload in the master once logging is set up."""
    source, allowed = "--forwarded-allow-ips", args.forwarded_allow_ips
    if allowed is None:
        source, allowed = "FORWARDED_ALLOW_IPS", os.environ.get("FORWARDED_ALLOW_IPS") or DEFAULT_ALLOWED
    try:
        ProxyHeaders(allowed)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if args.app is None:
        return None
    given = [name for name in RESPONDER_FLAGS if getattr(args, name) not in (None, [])]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag} is for the built-in responder; with APP given, the app answers "
                          "every request")
    if args.threads < 0:
        raise ConfigError(f"--threads: {args.threads} is negative")
    app_dir = os.path.abspath(args.app_dir)
    if not os.path.isdir(app_dir):
        raise ConfigError(f"--app-dir: {args.app_dir} is not a directory")
    if args.loop == "uvloop" and not uvloop_importable():
        raise ConfigError("--loop uvloop: uvloop cannot be imported (pip install uvloop, or --loop asyncio)")
    return App(spec=args.app, app_dir=app_dir, factory=args.factory, interface=args.interface, loop=args.loop,
               preload=args.preload, root_path=args.root_path, lifespan=args.lifespan, threads=args.threads,
               proxy_headers=args.proxy_headers, forwarded_allow_ips=allowed,
               underscore_headers=args.allow_underscore_headers)


def uvloop_importable() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def preload(config: Config) -> Config:
    """--preload: import the app in the master, before forking; a broken app is its traceback and exit 2."""
    from fastcluster.app.loading import AppLoadError, load_app

    app = config.app
    try:
        loaded = load_app(app.spec, app.app_dir, app.factory)
    except AppLoadError as exc:
        sys.stderr.write(exc.details)
        fail(str(exc))
    # The app's objects now live as long as the master: out of the collector's reach, a worker's
    # collections do not write to (and so copy) the pages it shares with the master.
    gc.freeze()
    return dataclasses.replace(config, app=dataclasses.replace(app, preloaded=loaded))


def serve_config(args: argparse.Namespace) -> Config:
    try:
        binds: list[Bind] = [dataclasses.replace(parse_bind(text), mode=args.uds_mode) for text in args.bind]
        binds = binds or systemd_binds()
    except ValueError as exc:
        raise ConfigError(f"--bind: {exc}") from None
    if not binds:
        binds = [parse_bind(f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}")]
    workers, cpus, unpinned = choose_pinning(args.cpus, not args.no_pin, args.workers)
    tls = tls_config(args)
    binds = [dataclasses.replace(bind, scheme=bind.scheme or ("https" if tls else "http")) for bind in binds]
    return Config(
        binds=binds,
        tls=tls if any(bind.scheme == "https" for bind in binds) else None,
        workers=workers,
        cpus=cpus,
        unpinned=unpinned,
        balance=args.balance,
        backlog=args.backlog,
        graceful_timeout=args.graceful_timeout,
        drain_delay=args.drain_delay,
        limits=Limits(
            max_request_line=args.max_request_line,
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
            max_body=args.max_body,
            limit_concurrency=args.limit_concurrency,
            header_timeout=args.header_timeout,
            keepalive_timeout=args.keepalive_timeout,
            body_timeout=args.body_timeout,
            write_timeout=args.write_timeout,
            ws_max_size=args.ws_max_size,
            ws_ping_interval=args.ws_ping_interval,
            ws_ping_timeout=args.ws_ping_timeout,
            ws_per_message_deflate=args.ws_per_message_deflate,
            max_connections=args.limit_connections,
        ),
        response=build_response(
            body=args.response_body, file=args.response_file, size=args.response_size,
            status=args.response_status or 200, headers=args.response_header,
            server_header=args.server_header,
            static=args.static,
        ),
        log_level=args.log_level,
        log_config=args.log_config,
        app=app_config(args),
        manager=Manager(
            control=args.control or "",
            pidfile=args.pidfile,
            timeout=args.timeout,
            max_requests=args.max_requests,
            max_requests_jitter=args.max_requests_jitter,
            max_memory=args.max_memory,
            admin_host=args.admin_host,
            admin_port=args.admin_port,
            access_log=args.access_log,
            access_log_format=args.access_log_format,
            identity=choose_identity(args.user, args.group),
            log_file=args.log_file,
            log_max_size=args.log_max_size,
            log_backups=args.log_backups,
            reload=watch_config(args),
        ),
    )


def tls_config(args: argparse.Namespace) -> TlsSettings | None:
    """The TLS settings, checked now (a bad certificate or key is one line and exit 2, before forking)."""
    if args.ssl_certfile is None:
        defaults = {"ssl_cert_reqs": TlsSettings.cert_reqs, "ssl_min_version": TlsSettings.min_version,
                    "ssl_sni": [], "ssl_ticket_key_lifetime": TlsSettings.ticket_key_lifetime,
                    "ssl_ktls": TlsSettings.ktls}
        others = [name for name in vars(args)
                  if name.startswith("ssl_") and getattr(args, name) != defaults.get(name)]
        if others:
            raise ConfigError(f"--{others[0].replace('_', '-')} needs --ssl-certfile")
        if any(text.startswith("https://") for text in args.bind):
            raise ConfigError("--bind https://...: serving https needs --ssl-certfile")
        return None
    try:
        sni = tuple(parse_sni(text) for text in args.ssl_sni)
    except ValueError as exc:
        raise ConfigError(f"--ssl-sni: {exc}") from None
    settings = TlsSettings(certfile=args.ssl_certfile, keyfile=args.ssl_keyfile,
                           password=args.ssl_keyfile_password, ca_certs=args.ssl_ca_certs,
                           cert_reqs=args.ssl_cert_reqs, ciphers=args.ssl_ciphers,
                           min_version=args.ssl_min_version, sni=sni,
                           ticket_key_lifetime=args.ssl_ticket_key_lifetime, ktls=args.ssl_ktls)
    problem = check_tls(settings)
    if problem:
        raise ConfigError(f"TLS: {problem}")
    return settings


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    show = argv[:1] == ["config"] and "--show" in argv
    if show:
        argv = ["serve", *(arg for arg in argv[1:] if arg != "--show")]
    sources: dict[str, str] = {}
    if argv[:1] == ["serve"]:
        serve = top._subparsers._group_actions[0].choices["serve"]
        try:
            sources = settings.apply(serve, argv[1:])
        except ConfigError as exc:
            fail(str(exc))
    args = top.parse_args(argv)
    if args.command == "config":
        fail("config: give --show, and any serve flags to see their effect")
    if args.command == "serve":
        from fastcluster.master import Master

        try:
            if args.umask is not None:
                os.umask(args.umask)
            if args.chdir:
                change_directory(args.chdir)
            config = serve_config(args)
            if show:
                given = set(settings.given_on_command_line(serve, argv[1:]))
                print(settings.render(serve, args, sources, given))
                return 0
            setup_logging(config.log_level, config.log_config)
        except ConfigError as exc:
            fail(str(exc))
        if config.app is not None and config.app.preload:
            config = preload(config)
        return Master(config).run()
    if args.command == "logs":
        return logs_command(args)
    if args.command == "top" or (args.command == "status" and args.watch):
        return live_command(args)
    return control_command(args)


def change_directory(path: str) -> None:
    try:
        os.chdir(path)
    except OSError as exc:
        raise ConfigError(f"--chdir: cannot change to {path}: {exc.strerror}") from None


def live_command(args: argparse.Namespace) -> int:
    """top and status --watch: redraw from the control socket's status until Ctrl-C."""
    from fastcluster.top import run_top, watch_status

    if args.command == "top":
        return until_interrupted(lambda: run_top(lambda: server_status(args), args.interval, args.plain))
    return until_interrupted(lambda: watch_status(lambda: server_status(args), 1.0))


def logs_command(args: argparse.Namespace) -> int:
    """Print the last lines of the server's log file, then follow it when asked."""
    def show() -> None:
        path = args.log_file or server_status(args)["master"].get("log_file")
        if not path:
            raise ControlError("the server has no --log-file: its workers write to its stderr")
        show_log(path, args.lines, args.follow)

    return until_interrupted(show)


def server_status(args: argparse.Namespace) -> dict:
    return request(args.control or find_control_path(args.port, args.host), {"command": "status"})["status"]


def until_interrupted(command: Callable[[], None]) -> int:
    """Run a command that ends with Ctrl-C (exit 0); a server it cannot ask or a file it cannot read is one
    line and exit 1."""
    try:
        command()
    except ControlError as exc:
        print(f"fastcluster: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fastcluster: error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def control_command(args: argparse.Namespace) -> int:
    """status, reload, scale, stop, rotate-ticket-keys: one request on the control socket; exit 1 if it
    failed."""
    message: dict = {"command": args.command}
    try:
        path = args.control or find_control_path(args.port, args.host)
        if args.command == "scale":
            count = args.workers
            if count[0] in "+-":
                current = request(path, {"command": "status"}, timeout=10)["status"]["master"]["workers"]
                count = str(max(1, current + int(count)))
            message["workers"] = int(count)
        reply = request(path, message)
    except (ControlError, OSError) as exc:
        print(f"fastcluster: error: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}",
              file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"fastcluster: error: {reply.get('error') or reply.get('message')}", file=sys.stderr)
        return 1
    if args.command == "status":
        print(json.dumps(reply["status"], indent=2) if args.json else render_status(reply["status"]))
    else:
        print(reply.get("message", "ok"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
