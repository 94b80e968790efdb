"""--balance reuseport: one SO_REUSEPORT socket per TCP address per slot, made and held by the master.

The kernel spreads connections over the slots' sockets. Because the master keeps each slot's socket open
for the life of the slot, connections queued on it survive the death of its worker: the replacement
inherits the same socket. Unix and fd:// addresses cannot be split this way and are shared by all slots.
"""

from __future__ import annotations

import socket

from fastcluster.balancing.base import Balancer
from fastcluster.binds import Bind, bound_port, open_tcp


class ReusePortBalancer(Balancer):
    def __init__(self) -> None:
        super().__init__()
        self.per_slot: dict[int, list[socket.socket]] = {}

    def open(self, binds: list[Bind], slots: int, backlog: int) -> None:
        self.backlog = backlog
        self.binds = []
        try:
            for bind in self.resolve(binds):
                if bind.kind != "tcp":
                    self.shared.append(self.open_shared(bind))
                elif not bind.port:
                    # Port 0: the first socket picks the port, the other slots join it.
                    first = open_tcp(bind, backlog, reuseport=True)
                    bind = Bind("tcp", host=bind.host, port=bound_port(first))
                    self.per_slot.setdefault(0, []).append(first)
                self.binds.append(bind)
            for slot in range(slots):
                self.add_slot(slot)
        except OSError:
            self.close()
            raise

    def add_slot(self, slot: int) -> None:
        have = self.per_slot.setdefault(slot, [])
        bound = {sock.getsockname()[:2] for sock in have}
        for bind in self.binds:
            if bind.kind == "tcp" and (bind.host, bind.port) not in bound:
                have.append(open_tcp(bind, self.backlog, reuseport=True))

    def remove_slot(self, slot: int) -> None:
        for sock in self.per_slot.pop(slot, []):
            sock.close()

    def sockets_for(self, slot: int) -> list[socket.socket]:
        return self.per_slot.get(slot, []) + self.shared

    def all_sockets(self) -> list[socket.socket]:
        return [sock for socks in self.per_slot.values() for sock in socks] + self.shared
