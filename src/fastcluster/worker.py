"""A worker process: pins itself to its CPU, builds the responder and the Cython server over its slot's
sockets, and serves until the master tells it to stop. Runs in the child right after fork."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import logging
import os
import signal
import socket
import sys
import traceback
from typing import NoReturn

from setproctitle import setproctitle

from fastcluster.access_log import AccessLog
from fastcluster.config import Config, Identity
from fastcluster.core.context import Context
from fastcluster.core.forwarded import ProxyHeaders
from fastcluster.core.responder import Responder
from fastcluster.core.server import Server
from fastcluster.core.static import StaticFiles
from fastcluster.tls import build_context, tls_listeners

#: Exit status of a worker that could not start (its reason is on the boot-error socket); the master retries
#: its slot with a slow backoff, or gives up when no worker of the first start could start.
WORKER_BOOT_ERROR = 3
#: Exit status of a worker whose resource counters were not back to zero at exit.
WORKER_LEAKED = 4

PR_SET_PDEATHSIG = 1
#: Characters of a boot failure's traceback sent to the master (its end: the frames nearest the error).
MAX_DETAILS = 16000

log = logging.getLogger("fastcluster.worker")


class BootError(Exception):
    """The worker cannot start; the message (and the app's traceback, if any) reach the master, then the
    user."""

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.details = details


def run(slot: int, cpu: int | None, config: Config, sockets: list[socket.socket], stats_block, record: int,
        boot_errors: socket.socket) -> NoReturn:
    """The whole life of a worker process; never returns. `record` is this worker's stats record."""
    status = 1
    try:
        server = boot(slot, cpu, config, sockets, stats_block, record)
        if config.app is None:
            server.run()
        else:
            serve_app(server, config, sockets)
        status = check_counters(server)
    except BootError as exc:
        report_boot_error(boot_errors, str(exc), exc.details)
        status = WORKER_BOOT_ERROR
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def boot(slot: int, cpu: int | None, config: Config, sockets: list[socket.socket], stats_block,
         record: int) -> Server:
    stop_with_master()
    setproctitle(f"fastcluster: worker {slot}" + (f" [cpu {cpu}]" if cpu is not None else ""))
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            raise BootError(f"cannot pin worker {slot} to CPU {cpu}: {exc.strerror}") from None
    response = config.response
    body = read_response_file(response.file) if response.file else response.body
    responder = Responder(body=body, status=response.status, content_type=response.content_type,
                          headers=response.headers, server_header=response.server_header)
    access_log = open_access_log(config)
    if become(config.manager.identity):
        stop_with_master()  # changing credentials cleared the parent-death signal
    static = StaticFiles(response.static) if response.static else None
    ctx = Context(responder, limits=config.limits, stats_block=stats_block, record=record,
                  access_log=access_log, static=static)
    server = Server(ctx, sockets,
                    exclusive_accept=config.balance == "shared", tls=tls_for(config, sockets))
    install_signals(server, config.graceful_timeout, access_log)
    return server


def serve_app(server: Server, config: Config, sockets: list[socket.socket]) -> None:
    """Run the user's app: an event loop (uvloop unless --loop asyncio) drives our epoll loop and the app."""
    from fastcluster.app.loading import AppLoadError, detect_interface, load_app

    spec = config.app
    try:
        app = spec.preloaded
        if app is None:
            app = load_app(spec.spec, spec.app_dir, spec.factory)
    except AppLoadError as exc:
        raise BootError(str(exc), exc.details) from None
    interface = detect_interface(app) if spec.interface == "auto" else spec.interface
    loop = new_event_loop(spec.loop)
    if interface == "asgi":
        # Not for WSGI: an app's asyncio.get_event_loop() must give it a loop of its own to run, not ours.
        asyncio.set_event_loop(loop)
    address = next((sock.getsockname() for sock in sockets if sock.family != socket.AF_UNIX), None)
    where = {"root_path": spec.root_path, "server": address[:2] if address else None,
             "proxy": ProxyHeaders(spec.forwarded_allow_ips) if spec.proxy_headers else None}
    responder = server.responder
    if interface == "asgi":
        from fastcluster.app.asgi import AsgiServer
        adapter = AsgiServer(app, loop, responder, max_output=config.limits.max_pending_output, **where)
        try:
            loop.run_until_complete(adapter.startup(spec.lifespan))
        except AppLoadError as exc:
            raise BootError(str(exc), exc.details) from None
    else:
        from fastcluster.core.wsgi import WsgiApp
        adapter = WsgiApp(app, loop, responder, threads=spec.threads,
                          underscore_headers=spec.underscore_headers,
                          max_output=config.limits.max_pending_output, **where)
    server.set_app_factory(adapter.adapter)
    # What exists now (the app's modules, its startup state) lives as long as the worker: frozen, the
    # collections that requests' garbage triggers no longer walk it (a full one of a large Django app takes
    # tens of milliseconds).
    gc.freeze()
    try:
        server.run_in(loop)
    finally:
        if interface == "asgi":
            loop.run_until_complete(adapter.shutdown())
        else:
            adapter.close()
        loop.close()


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """--loop: uvloop's (auto, when it imports: the master checked that --loop uvloop can), or asyncio's."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def tls_for(config: Config, sockets: list[socket.socket]) -> dict[int, object]:
    """The TLS context of each of our https sockets, built from the certificate files as they are now."""
    if config.tls is None:
        return {}
    from fastcluster.core.tls import TlsError

    try:
        context = build_context(config.tls)
    except TlsError as exc:
        raise BootError(f"TLS: {exc}") from None
    return tls_listeners(sockets, config.binds, context)


def read_response_file(path: str) -> bytes:
    """The built-in answer's body, read at every start so that a reload serves the file as it is now."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise BootError(f"--response-file: cannot read {path}: {exc.strerror}") from None


def open_access_log(config: Config) -> AccessLog | None:
    manager = config.manager
    if manager.access_log is None:
        return None
    try:
        return AccessLog(manager.access_log, manager.access_log_format)
    except OSError as exc:
        raise BootError(f"--access-log: cannot open {manager.access_log}: {exc.strerror}") from None


def stop_with_master() -> None:
    """Ask the kernel for SIGTERM when the master dies, so a killed master leaves no orphans serving."""
    master = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != master:  # the master died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def become(identity: Identity | None) -> bool:
    """--user/--group: drop root before anything of the app runs (the sockets and the access log are
    open already). True if the credentials changed."""
    if identity is None:
        return False
    try:
        if identity.name is not None:
            os.initgroups(identity.name, identity.gid)
        else:
            os.setgroups([identity.gid])
        os.setgid(identity.gid)
        if identity.uid is not None:
            os.setuid(identity.uid)
    except OSError as exc:
        raise BootError(f"cannot switch to uid {identity.uid} gid {identity.gid}: {exc.strerror}") from None
    return True


def install_signals(server: Server, graceful_timeout: float, access_log: AccessLog | None) -> None:
    """The worker's handlers for its whole life, the app's asyncio loop included (Server.stop wakes that
    loop). Not loop.add_signal_handler: uvloop's forwards a signal only while the loop runs, so a TERM
    between that call and run_forever was dropped, and the worker served on until the master killed it."""
    signal.signal(signal.SIGTERM, lambda *_: server.stop(graceful=True, timeout=graceful_timeout))
    signal.signal(signal.SIGQUIT, lambda *_: server.stop(graceful=False))
    for signum in (signal.SIGTERM, signal.SIGQUIT):
        # As add_signal_handler did: a blocking call in the app's C code that a stop interrupts is restarted
        # (its request is answered while draining), not failed with EINTR. epoll_wait returns all the same.
        signal.siginterrupt(signum, False)
    # Ctrl-C reaches the whole process group; the master turns it into a graceful stop of every worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The master forwards USR1 (reopen log files); the next once-a-second tick reopens the access log.
    if access_log is not None:
        signal.signal(signal.SIGUSR1, lambda *_: setattr(access_log, "reopen_requested", True))
    else:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)


def check_counters(server: Server) -> int:
    if server.open_connections or server.pending_buffers or server.requests_in_flight or server.parsers_lent:
        log.error("worker exits with %d connections, %d output buffers, %d requests in flight and %d parsers "
                  "lent still counted", server.open_connections, server.pending_buffers,
                  server.requests_in_flight, server.parsers_lent)
        return WORKER_LEAKED
    return 0


def report_boot_error(channel: socket.socket, reason: str, details: str) -> None:
    """Tell the master why we cannot start: one datagram (so reports of workers failing together never
    mix), keyed by our pid. The master shows it, once, however many workers fail the same way."""
    channel.settimeout(2)  # a master too busy to read must not keep us alive
    for shown in (details[-MAX_DETAILS:], ""):  # without the traceback if the datagram is too large
        try:
            channel.send(json.dumps({"pid": os.getpid(), "reason": reason, "details": shown}).encode())
            return
        except socket.timeout:
            return
        except OSError:
            continue
