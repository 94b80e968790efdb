"""The `fastcluster` command: parses flags into a Config and hands it to the master."""

from __future__ import annotations

import argparse
import logging
import sys

from fastcluster import __version__
from fastcluster.app.loading import AppSpec, LoadError, check_in_child, load
from fastcluster.binds import Bind, parse_bind, parse_port
from fastcluster.config import (
    Config,
    ConfigError,
    Limits,
    build_response,
    choose_cpus,
    choose_workers,
    systemd_binds,
)

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


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def non_negative_int(text: str) -> int:
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
                       help="your ASGI or WSGI app as module:attribute (default: the built-in responder)")
    apps = serve.add_argument_group("your app")
    apps.add_argument("--app-dir", default=".", metavar="DIR",
                      help="directory put first on sys.path to import APP (default: the current one)")
    apps.add_argument("--factory", action="store_true", help="APP is a factory: call it to get the app")
    apps.add_argument("--interface", choices=["auto", "asgi", "wsgi"], default="auto",
                      help="auto: an async callable is ASGI, anything else WSGI")
    apps.add_argument("--preload", action="store_true",
                      help="import APP in the master before forking (default: in each worker)")
    apps.add_argument("--root-path", default="", metavar="PATH",
                      help="path prefix the app is mounted under (ASGI root_path, WSGI SCRIPT_NAME)")
    apps.add_argument("--lifespan", choices=["auto", "on", "off"], default="auto",
                      help="ASGI lifespan events: auto uses them if the app supports them")
    apps.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                      help="WSGI: run requests on N threads per worker (default 0: on the event loop)")
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

    answer = serve.add_argument_group("built-in responder")
    answer.add_argument("--response-body", metavar="TEXT", help="body of the fixed answer")
    answer.add_argument("--response-file", metavar="PATH", help="answer with this file's bytes")
    answer.add_argument("--response-size", type=size, metavar="N", help="answer with N bytes")
    answer.add_argument("--response-status", type=int, default=200, metavar="CODE")
    answer.add_argument("--response-header", action="append", default=[], metavar="'Name: value'")
    server = answer.add_mutually_exclusive_group()
    server.add_argument("--server-header", default="fastcluster", metavar="VALUE",
                        help="Server header value (default fastcluster)")
    server.add_argument("--no-server-header", dest="server_header", action="store_const", const=None)

    limits = serve.add_argument_group("limits and timeouts")
    defaults = Limits()
    limits.add_argument("--max-request-line", type=size, default=defaults.max_request_line, metavar="BYTES")
    limits.add_argument("--max-header-bytes", type=size, default=defaults.max_header_bytes, metavar="BYTES")
    limits.add_argument("--max-headers", type=positive_int, default=defaults.max_headers, metavar="N")
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


def parser() -> Parser:
    top = Parser(prog="fastcluster", description="A multicore HTTP/1.1 server with a C hot path.")
    top.add_argument("--version", action="version", version=f"fastcluster {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    add_serve(commands)
    return top


def serve_config(args: argparse.Namespace) -> Config:
    try:
        binds: list[Bind] = [parse_bind(text) for text in args.bind] or systemd_binds()
    except ValueError as exc:
        raise ConfigError(f"--bind: {exc}") from None
    if not binds:
        binds = [parse_bind(f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}")]
    cpus = choose_cpus(args.cpus, pin=not args.no_pin)
    return Config(
        binds=binds,
        workers=choose_workers(args.workers, cpus),
        cpus=cpus,
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
        ),
        response=build_response(
            body=args.response_body, file=args.response_file, size=args.response_size,
            status=args.response_status, headers=args.response_header, server_header=args.server_header,
        ),
        log_level=args.log_level,
        app=AppSpec(target=args.app, app_dir=args.app_dir, factory=args.factory, interface=args.interface,
                    preload=args.preload, root_path=args.root_path, lifespan=args.lifespan,
                    threads=args.threads) if args.app else None,
    )


def prepare_app(spec: AppSpec) -> None:
    """Fail once, here, if the app does not import: in the master with --preload, else in a throwaway child."""
    if spec.preload:
        from fastcluster import worker

        worker.preloaded_app = load(spec)
    else:
        check_in_child(spec)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        from fastcluster.master import Master

        try:
            config = serve_config(args)
        except ConfigError as exc:
            fail(str(exc))
        setup_logging(config.log_level)
        if config.app is not None:
            try:
                prepare_app(config.app)
            except LoadError as exc:
                fail(str(exc))
        return Master(config).run()
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
