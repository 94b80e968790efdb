"""The worker's server when it runs an app: an asyncio loop (uvloop when installed) over the slot's
listening sockets, the once-a-second tick (Date header, heartbeat, timeouts), lifespan and draining."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from functools import partial

from fastcluster.app import asgi, wsgi
from fastcluster.app.loading import AppSpec, LoadedApp
from fastcluster.app.protocol import HttpConnection
from fastcluster.config import Limits

log = logging.getLogger("fastcluster.app")


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class BootFailed(Exception):
    """The app cannot start in this worker (lifespan startup failed); the message is the app's."""


class AppServer:
    def __init__(self, loaded: LoadedApp, spec: AppSpec, limits: Limits, fds: list[int],
                 server_header: bytes | None, backlog: int = 2048, heartbeat=None) -> None:
        self.app = loaded.app
        self.interface = loaded.interface
        self.spec = spec
        self.limits = limits
        self.fds = fds
        self.backlog = backlog
        self.root_path = spec.root_path.rstrip("/")
        self.server_header = b"server: " + server_header if server_header else None
        self.heartbeat = heartbeat
        self.threads = spec.threads if loaded.interface == "wsgi" else 0
        self.executor = ThreadPoolExecutor(self.threads, "fastcluster-wsgi") if self.threads else None
        self.state: dict = {}
        self.connections: set[HttpConnection] = set()
        self.in_flight = 0
        self.draining = False
        self.date_header = b""
        self.loop = new_loop()
        self.listeners: list[asyncio.base_events.Server] = []
        self.stopped: asyncio.Future | None = None
        self.pending_buffers = 0
        run = asgi.run_http if self.interface == "asgi" else wsgi.run_request
        self.run_request = partial(run, self.app)
        self.tick()

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    def handle(self, conn: HttpConnection, request) -> None:
        self.loop.create_task(self.run_request(conn, request))

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.main())
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=False, cancel_futures=True)
            self.loop.close()

    async def main(self) -> None:
        self.stopped = self.loop.create_future()
        lifespan = None
        if self.interface == "asgi":
            lifespan = asgi.Lifespan(self.app, self.spec.lifespan, self.state, self.loop)
            try:
                await lifespan.startup()
            except asgi.LifespanError as exc:
                raise BootFailed(f"lifespan startup failed: {exc}") from None
        for fd in self.fds:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            listener = await self.loop.create_server(lambda: HttpConnection(self), sock=sock,
                                                       backlog=self.backlog)
            self.listeners.append(listener)
        timeout = await self.stopped
        await self.drain(timeout)
        if lifespan is not None:
            await lifespan.shutdown()

    def stop(self, graceful: bool = True, timeout: float = 30.0) -> None:
        """Called from a signal handler: stop accepting and finish (graceful) or stop now."""
        self.loop.call_soon_threadsafe(self._stop, timeout if graceful else 0.0)

    def _stop(self, timeout: float) -> None:
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(timeout)
        elif timeout == 0.0:
            for conn in list(self.connections):
                conn.transport.abort()

    async def drain(self, timeout: float) -> None:
        self.draining = True
        for listener in self.listeners:
            listener.close()  # the master keeps the slot's socket; this closes only our copy
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            for conn in list(self.connections):
                if conn.idle():
                    conn.close()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.abort()
        self.connections.clear()

    def tick(self) -> None:
        now = time.time()
        self.date_header = b"date: " + formatdate(now, usegmt=True).encode()
        if self.heartbeat is not None:
            self.heartbeat()
        monotonic = time.monotonic()
        limits = self.limits
        for conn in list(self.connections):
            if conn.head_started is not None and monotonic - conn.head_started > limits.header_timeout:
                if conn.current is None:
                    conn.answer_error(408, b"Request Timeout")
                else:
                    conn.close()
            elif conn.idle() and monotonic - conn.last_activity > limits.keepalive_timeout:
                conn.close()
        self.loop.call_at(self.loop.time() + 1.0 - (now % 1.0), self.tick)


def install_signals(server: AppServer, graceful_timeout: float) -> None:
    signal.signal(signal.SIGTERM, lambda *_: server.stop(graceful=True, timeout=graceful_timeout))
    signal.signal(signal.SIGQUIT, lambda *_: server.stop(graceful=False))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
