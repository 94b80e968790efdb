"""A worker process: pins itself to its CPU, builds the responder and the Cython server over its slot's
sockets, and serves until the master tells it to stop. Runs in the child right after fork."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import traceback
from typing import NoReturn

from setproctitle import setproctitle

from fastcluster.config import Config
from fastcluster.core.context import Context
from fastcluster.core.responder import Responder
from fastcluster.core.server import Server

#: Exit status of a worker that could not start; the master does not respawn it (a crash loop otherwise).
WORKER_BOOT_ERROR = 3
#: Exit status of a worker whose resource counters were not back to zero at exit.
WORKER_LEAKED = 4

PR_SET_PDEATHSIG = 1

log = logging.getLogger("fastcluster.worker")


class BootError(Exception):
    """The worker cannot start; the message reaches the master and the user."""


def run(slot: int, config: Config, sockets: list[socket.socket], stats_block, boot_errors: int) -> NoReturn:
    """The whole life of a worker process; never returns."""
    status = 1
    try:
        server = boot(slot, config, sockets, stats_block)
        server.run()
        status = check_counters(server)
    except BootError as exc:
        report_boot_error(boot_errors, slot, str(exc))
        status = WORKER_BOOT_ERROR
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(status)


def boot(slot: int, config: Config, sockets: list[socket.socket], stats_block) -> Server:
    stop_with_master()
    cpu = config.cpu_for(slot)
    setproctitle(f"fastcluster: worker {slot}" + (f" [cpu {cpu}]" if cpu is not None else ""))
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            raise BootError(f"cannot pin worker {slot} to CPU {cpu}: {exc.strerror}") from None
    response = config.response
    responder = Responder(body=response.body, status=response.status, content_type=response.content_type,
                          headers=response.headers, server_header=response.server_header)
    ctx = Context(responder, limits=config.limits, stats_block=stats_block, slot=slot)
    server = Server(ctx, [sock.fileno() for sock in sockets],
                    exclusive_accept=config.balance == "shared")
    install_signals(server, config.graceful_timeout)
    return server


def stop_with_master() -> None:
    """Ask the kernel for SIGTERM when the master dies, so a killed master leaves no orphans serving."""
    master = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != master:  # the master died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def install_signals(server: Server, graceful_timeout: float) -> None:
    signal.signal(signal.SIGTERM, lambda *_: server.stop(graceful=True, timeout=graceful_timeout))
    signal.signal(signal.SIGQUIT, lambda *_: server.stop(graceful=False))
    # Ctrl-C reaches the whole process group; the master turns it into a graceful stop of every worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def check_counters(server: Server) -> int:
    if server.open_connections or server.pending_buffers:
        log.error("worker exits with %d connections and %d output buffers still counted",
                  server.open_connections, server.pending_buffers)
        return WORKER_LEAKED
    return 0


def report_boot_error(fd: int, slot: int, reason: str) -> None:
    log.error("worker %d cannot start: %s", slot, reason)
    line = f"{slot} {reason}".replace("\n", " ")[:400] + "\n"
    try:
        os.write(fd, line.encode(errors="replace"))
    except OSError:
        pass
