"""What every balancing strategy offers the master."""

from __future__ import annotations

import os
import socket

from fastcluster.binds import Bind, adopt_fd, check_port_free, open_tcp, open_unix, resolve_host


class Balancer:
    #: Workers register their listening sockets with EPOLLEXCLUSIVE (one wakes per connection).
    exclusive_accept = False

    def __init__(self) -> None:
        self.binds: list[Bind] = []
        self.backlog = 2048
        self.shared: list[socket.socket] = []  # sockets every slot accepts from
        self.socket_files: dict[str, int] = {}  # unix socket path -> inode, removed at close

    def open(self, binds: list[Bind], slots: int, backlog: int) -> None:
        """Make the listening sockets for slots 0..slots-1; raise OSError naming the bind that failed."""
        raise NotImplementedError

    def sockets_for(self, slot: int) -> list[socket.socket]:
        raise NotImplementedError

    def add_slot(self, slot: int) -> None:
        """Make the sockets of a new slot (scale up)."""

    def remove_slot(self, slot: int) -> None:
        """Close the sockets of a slot whose worker has gone for good (scale down)."""

    def all_sockets(self) -> list[socket.socket]:
        raise NotImplementedError

    def steer(self, active: set[int]) -> None:
        """Send new connections only to the sockets of the `active` slots (where the strategy can)."""

    def queued(self, slot: int) -> int:
        """Connections waiting on sockets only this slot accepts from (what closing them would reset)."""
        return 0

    def close(self) -> None:
        for sock in self.all_sockets():
            sock.close()
        for path, inode in self.socket_files.items():
            try:
                if os.lstat(path).st_ino == inode:  # still ours, not a successor's
                    os.unlink(path)
            except OSError:
                pass
        self.socket_files.clear()

    def addresses(self) -> list[str]:
        return [str(bind) for bind in self.binds]

    def open_shared(self, bind: Bind) -> socket.socket:
        if bind.kind == "unix":
            sock = open_unix(bind, self.backlog)
            self.socket_files[bind.path] = os.stat(bind.path).st_ino
            return sock
        if bind.kind == "fd":
            return adopt_fd(bind)
        return open_tcp(bind, self.backlog, reuseport=False)

    def resolve(self, binds: list[Bind]) -> list[Bind]:
        resolved = [resolve_host(bind) for bind in binds]
        for bind in resolved:
            if bind.kind == "tcp" and bind.port:
                check_port_free(bind)
        return resolved
