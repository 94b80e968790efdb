"""Connection balancing between worker slots: which listening sockets each slot accepts from.

One file per strategy; each is a small object the master asks for a slot's sockets. Both make the sockets
in the master, so a worker that dies leaves its queued connections to its successor.
"""

from __future__ import annotations

import socket

from fastcluster.balancing.base import Balancer
from fastcluster.balancing.reuseport import ReusePortBalancer
from fastcluster.balancing.shared import SharedBalancer

STRATEGIES: dict[str, type[Balancer]] = {"reuseport": ReusePortBalancer, "shared": SharedBalancer}


def make_balancer(name: str) -> Balancer:
    if name == "reuseport" and not hasattr(socket, "SO_REUSEPORT"):
        return SharedBalancer()
    return STRATEGIES[name]()


__all__ = ["Balancer", "STRATEGIES", "make_balancer"]
