"""The `fastcluster` command: parses flags into a Config and hands it to the master."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys

from fastcluster import __version__
from fastcluster.access_log import FORMATS
from fastcluster.binds import Bind, parse_bind, parse_port
from fastcluster.config import (
    App,
    Config,
    ConfigError,
    Limits,
    Manager,
    build_response,
    choose_pinning,
    default_control_path_for_port,
    systemd_binds,
)
from fastcluster.control import ControlError, request
from fastcluster.logs import setup_logging
from fastcluster.status import render_status

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one readable line and exit status 2."""

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


def port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve HTTP on every core")
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
    apps.add_argument("--threads", type=int, default=0, metavar="N",
                      help="WSGI: run requests on N threads per worker (default 0: in the worker's loop)")
    where = serve.add_argument_group("sockets")
    where.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    where.add_argument("--port", type=port, default=8000, help="port to listen on (default 8000)")
    where.add_argument("--bind", action="append", default=[], metavar="ADDR",
                       help="HOST:PORT, [V6]:PORT, unix:PATH or fd://N; repeatable; replaces --host/--port")
    where.add_argument("--backlog", type=positive_int, default=2048, help="listen backlog (default 2048)")
    where.add_argument("--balance", choices=["reuseport", "shared"], default="reuseport",
                       help="one SO_REUSEPORT socket per worker (default) or one socket for all")

    procs = serve.add_argument_group("processes")
    procs.add_argument("--workers", default="auto", help="number of workers, or auto (default: usable CPUs)")
    procs.add_argument("--cpus", help="CPUs to pin workers to, e.g. 0-3,8 (default: all allowed)")
    procs.add_argument("--no-pin", action="store_true", help="do not pin workers to CPUs")
    procs.add_argument("--graceful-timeout", type=positive_float, default=30.0,
                       help="seconds to finish in-flight requests on stop (default 30)")
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
                             "$XDG_RUNTIME_DIR or /tmp, fastcluster-PORT.sock)")
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
    manage.add_argument("--access-log-format", choices=FORMATS, default="common",
                        help="common (default), combined or json")

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
    limits.add_argument("--header-timeout", type=positive_float, default=defaults.header_timeout,
                        metavar="S", help="time to receive a request head, from its first byte (408)")
    limits.add_argument("--keepalive-timeout", type=positive_float, default=defaults.keepalive_timeout,
                        metavar="S", help="idle time before a keep-alive connection is closed")
    limits.add_argument("--body-timeout", type=positive_float, default=defaults.body_timeout, metavar="S",
                        help="longest pause while receiving a body (408)")
    limits.add_argument("--write-timeout", type=positive_float, default=defaults.write_timeout, metavar="S",
                        help="longest a client may leave our output unread")


def add_control_commands(commands: argparse._SubParsersAction) -> None:
    def control_options(command: argparse.ArgumentParser) -> None:
        where = command.add_mutually_exclusive_group()
        where.add_argument("--control", metavar="PATH", help="the server's control socket")
        where.add_argument("--port", type=port, default=8000,
                           help="find the control socket of the server on this port (default 8000)")

    status = commands.add_parser("status", help="show the workers of a running server")
    control_options(status)
    status.add_argument("--json", action="store_true", help="print the full status as JSON")
    reload = commands.add_parser("reload", help="rolling reload: replace the workers one at a time")
    control_options(reload)
    scale = commands.add_parser("scale", help="change the number of workers")
    control_options(scale)
    scale.add_argument("workers", type=scale_count, help="N, +N or -N")
    stop = commands.add_parser("stop", help="stop the server gracefully")
    control_options(stop)


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
    add_control_commands(commands)
    return top


RESPONDER_FLAGS = ("static", "response_body", "response_file", "response_size", "response_status",
                   "response_header")


def app_config(args: argparse.Namespace) -> App | None:
    """The app to run. It is imported later: in each worker (a broken one fails once, with its traceback,
    and exit 2; see Master.cannot_start), or with --preload in the master once logging is set up."""
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
    return App(spec=args.app, app_dir=app_dir, factory=args.factory, interface=args.interface,
               preload=args.preload, root_path=args.root_path, lifespan=args.lifespan, threads=args.threads)


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
        binds: list[Bind] = [parse_bind(text) for text in args.bind] or systemd_binds()
    except ValueError as exc:
        raise ConfigError(f"--bind: {exc}") from None
    if not binds:
        binds = [parse_bind(f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}")]
    workers, cpus, unpinned = choose_pinning(args.cpus, not args.no_pin, args.workers)
    return Config(
        binds=binds,
        workers=workers,
        cpus=cpus,
        unpinned=unpinned,
        balance=args.balance,
        backlog=args.backlog,
        graceful_timeout=args.graceful_timeout,
        limits=Limits(
            max_request_line=args.max_request_line,
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
            max_body=args.max_body,
            header_timeout=args.header_timeout,
            keepalive_timeout=args.keepalive_timeout,
            body_timeout=args.body_timeout,
            write_timeout=args.write_timeout,
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
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        from fastcluster.master import Master

        try:
            config = serve_config(args)
            setup_logging(config.log_level, config.log_config)
        except ConfigError as exc:
            fail(str(exc))
        if config.app is not None and config.app.preload:
            config = preload(config)
        return Master(config).run()
    return control_command(args)


def control_command(args: argparse.Namespace) -> int:
    """status, reload, scale, stop: one request on the control socket; exit 1 if it failed."""
    path = args.control or default_control_path_for_port(args.port)
    message: dict = {"command": args.command}
    try:
        if args.command == "scale":
            count = args.workers
            if count[0] in "+-":
                current = request(path, {"command": "status"}, timeout=10)["status"]["master"]["workers"]
                count = str(max(1, current + int(count)))
            message["workers"] = int(count)
        reply = request(path, message)
    except ControlError as exc:
        print(f"fastcluster: error: {exc}", file=sys.stderr)
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
