"""The master's small request servers (control socket, admin listener): non-blocking, polled from the
master's loop, one request per connection, read until complete, answered once, then closed."""

from __future__ import annotations

import socket
import time


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.since = time.monotonic()
        self.received = False  # its request is read; the answer may come later (reload, scale)


class OneShotServer:
    #: Largest request accepted; past it the subclass's too_long() answers.
    max_request = 65536
    #: A client that has not sent a complete request within this many seconds is dropped.
    request_timeout = 10.0

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.clients: dict[int, Client] = {}

    def complete(self, buffer: bytes) -> bool:
        """Whether buffer holds a whole request."""
        raise NotImplementedError

    def too_long(self, client: Client) -> None:
        raise NotImplementedError

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def sockets(self) -> list[socket.socket]:
        return [self.listener] + [client.sock for client in self.clients.values()]

    def receive(self, ready: set[int]) -> list[Client]:
        """Accept and read what is ready; the clients whose request is now complete."""
        complete = []
        if self.listener.fileno() in ready:
            while True:
                try:
                    sock, _ = self.listener.accept()
                except OSError:  # BlockingIOError when no one is left, or a connection already gone
                    break
                sock.setblocking(False)
                self.clients[sock.fileno()] = Client(sock)
        for fd in [fd for fd in ready if fd in self.clients]:
            client = self.clients[fd]
            try:
                data = client.sock.recv(self.max_request)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.drop(client)
                continue
            if client.received:
                continue  # one request per connection; more input is ignored
            client.buffer += data
            if self.complete(client.buffer):
                client.received = True
                complete.append(client)
            elif len(client.buffer) > self.max_request:
                client.received = True
                self.too_long(client)
        now = time.monotonic()
        for client in list(self.clients.values()):
            if not client.received and now - client.since > self.request_timeout:
                self.drop(client)
        return complete

    def reply(self, client: Client, data: bytes) -> None:
        """Send the whole answer and close (answers are small: they fit in the socket buffer)."""
        try:
            client.sock.setblocking(True)
            client.sock.settimeout(1.0)
            client.sock.sendall(data)
        except OSError:
            pass
        self.drop(client)

    def drop(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def close(self) -> None:
        for client in list(self.clients.values()):
            self.drop(client)
        self.listener.close()
