"""Reuseport steering: the BPF program sends connections only to the sockets in rotation, and GroupOrder
follows the kernel's order of a group's sockets when one in the middle closes."""

from __future__ import annotations

import socket

from fastcluster.balancing.steering import GroupOrder, accept_queue_length, attach


def listeners(count: int) -> list[socket.socket]:
    socks = []
    port = 0
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        port = sock.getsockname()[1]
        socks.append(sock)
    return socks


def spread(socks: list[socket.socket], connections: int = 40) -> list[int]:
    """Open connections and count how many each listener queued."""
    port = socks[0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    counts = [accept_queue_length(sock) for sock in socks]
    for client in clients:
        client.close()
    for sock in socks:
        sock.setblocking(False)
        try:
            while True:
                sock.accept()[0].close()
        except BlockingIOError:
            pass
    return counts


def test_steering_follows_the_rotation_and_the_kernel_order():
    socks = listeners(3)
    order = GroupOrder()
    for slot in range(3):
        order.added(slot)
    try:
        attach(socks[0], order.indices({0, 1, 2}))
        assert all(count > 0 for count in spread(socks))
        attach(socks[0], order.indices({0, 2}))
        counts = spread(socks)
        assert counts[1] == 0 and counts[0] + counts[2] == 40
        socks[1].close()  # the kernel moves the last socket into its place
        order.removed(1)
        assert order.slots == [0, 2]
        attach(socks[0], order.indices({2}))
        assert spread([socks[0], socks[2]]) == [0, 40]
    finally:
        for sock in socks:
            sock.close()
