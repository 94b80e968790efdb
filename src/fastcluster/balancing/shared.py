"""--balance shared: one listening socket per address, every worker accepts from it (EPOLLEXCLUSIVE)."""

from __future__ import annotations

import socket
from dataclasses import replace

from fastcluster.balancing.base import Balancer
from fastcluster.binds import Bind, bound_port


class SharedBalancer(Balancer):
    exclusive_accept = True

    def open(self, binds: list[Bind], slots: int, backlog: int) -> None:
        self.backlog = backlog
        self.binds = []
        try:
            for bind in self.resolve(binds):
                sock = self.open_shared(bind)
                self.shared.append(sock)
                if bind.kind == "tcp" and not bind.port:
                    bind = replace(bind, port=bound_port(sock))
                self.binds.append(bind)
        except OSError:
            self.close()
            raise

    def sockets_for(self, slot: int) -> list[socket.socket]:
        return list(self.shared)

    def all_sockets(self) -> list[socket.socket]:
        return list(self.shared)
