"""gunicorn's and uvicorn's flags for `serve`: the one table of them. Those with an equivalent work as
aliases of our flag (`-w 4`, `--uds PATH`); the others stop with one line naming our spelling or saying
why there is none. Aliases are hidden from --help and are not config-file keys."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Habit:
    ours: str = ""  # our flag; "" when there is none
    prefix: str = ""  # works as an alias: our value is prefix + the given value
    works: bool = False  # an alias; otherwise the flag is refused with the advice
    note: str = ""  # why there is no equivalent, or how to get the effect
    value: bool = True  # the flag takes a value

    def advice(self) -> str:
        if self.ours:
            return f"fastcluster's spelling is {self.ours}" + (f" ({self.note})" if self.note else "")
        return f"not supported: {self.note}"


def alias(ours: str, prefix: str = "") -> Habit:
    return Habit(ours, prefix, works=True)


def spelled(ours: str, note: str = "", value: bool = True) -> Habit:
    return Habit(ours, note=note, value=value)


def unsupported(note: str, value: bool = True) -> Habit:
    return Habit(note=note, value=value)


NATIVE = unsupported("ASGI and WSGI apps run natively in fastcluster's own workers")
NO_DAEMON = unsupported("run it under systemd, a container or a supervisor", value=False)
NO_STATSD = unsupported("scrape /metrics (Prometheus) from --admin-port")
NO_NAME = unsupported("the process titles are fastcluster: master / worker N")
NO_DATE = unsupported("every answer has a Date header", value=False)

ALIASES: dict[str, Habit] = {
    # the same thing under another name: works
    "-w": alias("--workers"),
    "-b": alias("--bind"),
    "--uds": alias("--bind", "unix:"),
    "--fd": alias("--bind", "fd://"),
    "--timeout-keep-alive": alias("--keepalive-timeout"),
    "--access-logfile": alias("--access-log"),
    "--pid": alias("--pidfile"),
    "-p": alias("--pidfile"),
    "-t": alias("--timeout"),
    "-u": alias("--user"),
    "-g": alias("--group"),
    "-m": alias("--umask"),
    # an equivalent under our name
    "--keep-alive": spelled("--keepalive-timeout"),
    "--timeout-graceful-shutdown": spelled("--graceful-timeout"),
    "--limit-max-requests": spelled("--max-requests"),
    "--limit-request-line": spelled("--max-request-line", "in bytes"),
    "--limit-request-fields": spelled("--max-headers"),
    "--limit-request-field_size": spelled("--max-header-bytes", "for the whole head"),
    "--h11-max-incomplete-event-size": spelled("--max-header-bytes"),
    "--access-logformat": spelled("--access-log-format", "common, combined or json"),
    "--no-access-log": spelled("no --access-log", "the access log is off unless given", value=False),
    "-c": spelled("--config", "a TOML file"),
    "--pythonpath": spelled("--app-dir"),
    "-e": spelled("--env-file", "or the environment"),
    "--env": spelled("--env-file", "or the environment"),
    "--reuse-port": spelled("--balance reuseport", "the default", value=False),
    "--check-config": spelled("fastcluster config --show", value=False),
    "--print-config": spelled("fastcluster config --show", value=False),
    "--initgroups": spelled("--user", "which always sets the user's groups", value=False),
    # no equivalent
    "-k": NATIVE,
    "--worker-class": NATIVE,
    "--worker-connections": unsupported("a worker takes connections until --max-* limits or memory say no"),
    "--http": unsupported("requests are parsed by fastcluster with httptools"),
    "--ws": unsupported("there is one WebSocket implementation"),
    "--ws-max-queue": unsupported("an app that does not receive() stops the socket being read instead"),
    "--reload-delay": unsupported("--reload reloads once a batch of changes has settled"),
    "--reload-engine": unsupported("--reload watches with watchfiles"),
    "--reload-extra-file": spelled("--reload-include", "a glob, with --reload-dir for a directory outside"),
    "--ssl-version": spelled("--ssl-min-version", "TLSv1.2 or TLSv1.3"),
    "--keyfile": alias("--ssl-keyfile"),
    "--certfile": alias("--ssl-certfile"),
    "--ca-certs": alias("--ssl-ca-certs"),
    "--ciphers": alias("--ssl-ciphers"),
    "--cert-reqs": spelled("--ssl-cert-reqs", "none, optional or required"),
    "-D": NO_DAEMON,
    "--daemon": NO_DAEMON,
    "--statsd-host": NO_STATSD,
    "--statsd-prefix": NO_STATSD,
    "--use-colors": unsupported("logs are plain; --log-config formats them", value=False),
    "--no-use-colors": unsupported("logs are plain", value=False),
    "--header": unsupported("an app sets its own headers (--response-header is the built-in responder's)"),
    "--date-header": NO_DATE,
    "--no-date-header": NO_DATE,
    "--error-logfile": alias("--log-file"),
    "--capture-output": spelled("--log-file", "it collects the workers' stdout and stderr", value=False),
    "--worker-tmp-dir": unsupported("heartbeats go through shared memory, no files"),
    "-n": NO_NAME,
    "--name": NO_NAME,
    "--paste": unsupported("give the app as module:attribute"),
    "--proxy-protocol": unsupported("the PROXY protocol is not read", value=False),
    "--no-sendfile": unsupported("files always go out with sendfile", value=False),
}


class Refused(argparse.Action):
    """A gunicorn or uvicorn flag with no alias here: one line saying what to use, exit status 2."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(f"{option_string}: {ALIASES[option_string].advice()}")


def add_habits(serve: argparse.ArgumentParser) -> None:
    """Register the table's flags on the serve parser: aliases as hidden copies of their target's action
    (same type, same checks), the rest as Refused."""
    targets = {option: action for action in serve._actions for option in action.option_strings}
    for flag, habit in ALIASES.items():
        if flag in targets:
            continue  # the flag has become ours
        if not habit.works:
            serve.add_argument(flag, action=Refused, nargs="?" if habit.value else 0, help=argparse.SUPPRESS)
            continue
        target = targets[habit.ours]
        serve.add_argument(flag, dest=target.dest, action=type(target), type=prefixed(target, habit.prefix),
                           choices=target.choices, metavar=target.metavar, default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)


def prefixed(target: argparse.Action, prefix: str):
    if not prefix:
        return target.type
    convert = target.type or str
    return lambda text: convert(prefix + text)
