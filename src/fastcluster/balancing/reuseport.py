"""--balance reuseport: one SO_REUSEPORT socket per TCP address per slot, made and held by the master.

The master keeps each slot's socket open for the life of the slot, so connections queued on it survive the
death of its worker: the replacement inherits the same socket. A BPF program (steering.py) spreads new
connections over the slots in rotation; on scale-down a slot leaves the rotation first, and its socket is
closed only once its queue is empty. Unix and fd:// addresses cannot be split this way and are shared by
all slots.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import replace

from fastcluster.balancing.base import Balancer
from fastcluster.balancing.steering import GroupOrder, accept_queue_length, attach
from fastcluster.binds import Bind, bound_port, open_tcp

log = logging.getLogger("fastcluster.master")


class ReusePortBalancer(Balancer):
    def __init__(self) -> None:
        super().__init__()
        self.per_slot: dict[int, list[socket.socket]] = {}
        self.orders: dict[tuple, GroupOrder] = {}
        self.steering = True

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
                    bind = replace(bind, port=bound_port(first))
                    self.per_slot.setdefault(0, []).append(first)
                    self.orders.setdefault((bind.host, bind.port), GroupOrder()).added(0)
                self.binds.append(bind)
            for slot in range(slots):
                self.add_slot(slot)
        except OSError:
            self.close()
            raise
        self.steer(set(range(slots)))

    def add_slot(self, slot: int) -> None:
        have = self.per_slot.setdefault(slot, [])
        bound = {sock.getsockname()[:2] for sock in have}
        for bind in self.binds:
            if bind.kind == "tcp" and (bind.host, bind.port) not in bound:
                have.append(open_tcp(bind, self.backlog, reuseport=True))
                self.orders.setdefault((bind.host, bind.port), GroupOrder()).added(slot)

    def remove_slot(self, slot: int) -> None:
        for sock in self.per_slot.pop(slot, []):
            key = sock.getsockname()[:2]
            sock.close()
            self.orders[key].removed(slot)

    def steer(self, active: set[int]) -> None:
        if not self.steering:
            return
        for key, order in self.orders.items():
            member = next(sock for slot in order.slots for sock in self.per_slot[slot]
                          if sock.getsockname()[:2] == key)
            try:
                attach(member, order.indices(active))
            except (OSError, ValueError) as exc:
                self.steering = False
                log.warning("cannot steer connections between slots (%s): a slot removed by scaling down "
                            "may reset connections queued on it", exc)
                return

    def queued(self, slot: int) -> int:
        return sum(accept_queue_length(sock) for sock in self.per_slot.get(slot, []))

    def sockets_for(self, slot: int) -> list[socket.socket]:
        return self.per_slot.get(slot, []) + self.shared

    def all_sockets(self) -> list[socket.socket]:
        return [sock for socks in self.per_slot.values() for sock in socks] + self.shared
