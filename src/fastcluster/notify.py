"""systemd's notify protocol (Type=notify), in plain Python: when $NOTIFY_SOCKET names a datagram socket
(a path, or `@name` for an abstract one), the master sends it one datagram per message: READY=1,
RELOADING=1 with MONOTONIC_USEC, STOPPING=1, STATUS=..., and WATCHDOG=1 at half of $WATCHDOG_USEC.
Without $NOTIFY_SOCKET every method does nothing."""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("fastcluster.master")

#: Seconds between STATUS= updates while nothing else happens.
STATUS_EVERY = 5.0


class Notifier:
    def __init__(self) -> None:
        address = os.environ.pop("NOTIFY_SOCKET", "")  # the app's own children must not speak for us
        usec = os.environ.pop("WATCHDOG_USEC", "")
        watchdog_pid = os.environ.pop("WATCHDOG_PID", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock: socket.socket | None = None
        if self.address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.setblocking(False)
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_every = int(usec) / 2e6 if usec.isdigit() and int(usec) and mine and self.sock else 0.0
        self.next_watchdog = 0.0
        self.next_status = 0.0

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, **fields: object) -> None:
        """One datagram: FIELD=value lines (a lost message must not stop the server, so errors are logged)."""
        if self.sock is None:
            return
        message = "\n".join(f"{name}={value}" for name, value in fields.items()).encode()
        try:
            self.sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), exc.strerror)

    def ready(self, status: str) -> None:
        self.send(READY=1, STATUS=status)
        self.next_status = time.monotonic() + STATUS_EVERY

    def reloading(self) -> None:
        self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
                  STATUS="reloading")

    def stopping(self) -> None:
        self.send(STOPPING=1, STATUS="stopping")

    def tick(self, status: str) -> None:
        """From the master's loop: the watchdog when due, the status every few seconds."""
        now = time.monotonic()
        if self.watchdog_every and now >= self.next_watchdog:
            self.send(WATCHDOG=1)
            self.next_watchdog = now + self.watchdog_every
        if self.next_status and now >= self.next_status:
            self.send(STATUS=status)
            self.next_status = now + STATUS_EVERY

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
