"""The control socket: a Unix socket owned by the master that speaks line-delimited JSON. A client sends one
request line ({"command": "status" | "reload" | "scale" | "stop", ...}) and reads one answer line
({"ok": true|false, ...}); reload and scale answer once they are finished. The master serves it from its
loop, never blocking on a client. `request()` is the client side, used by the CLI."""

from __future__ import annotations

import json
import os
import socket
import stat
import time

MAX_REQUEST = 65536
#: A client that has not sent a complete request line within this many seconds is dropped.
REQUEST_TIMEOUT = 10.0


class ControlError(Exception):
    """No server answers on the control socket, or it answered something unreadable."""


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.since = time.monotonic()
        self.received = False  # its request is read; the answer may come later (reload, scale)


class ControlServer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.clients: dict[int, Client] = {}
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise OSError(f"{path} exists and is not a socket")
            try:
                request(path, {"command": "ping"}, timeout=1)
            except ControlError:
                os.unlink(path)  # left behind by a server that is gone
            else:
                raise OSError(f"another server is running on control socket {path}")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o077)  # only our user may control the server
        try:
            self.listener.bind(path)
        finally:
            os.umask(umask)
        self.listener.listen(64)
        self.listener.setblocking(False)

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def sockets(self) -> list[socket.socket]:
        return [self.listener] + [client.sock for client in self.clients.values()]

    def requests(self, ready: set[int]) -> list[tuple[Client, dict]]:
        """Accept and read what is ready; the complete requests, each with the client to answer."""
        complete = []
        if self.listener.fileno() in ready:
            while True:
                try:
                    sock, _ = self.listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                sock.setblocking(False)
                self.clients[sock.fileno()] = Client(sock)
        for fd in [fd for fd in ready if fd in self.clients]:
            client = self.clients[fd]
            try:
                data = client.sock.recv(MAX_REQUEST)
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
            if b"\n" in client.buffer:
                client.received = True
                line = client.buffer.split(b"\n", 1)[0]
                try:
                    message = json.loads(line)
                    if not isinstance(message, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    self.answer(client, {"ok": False, "error": f"unreadable request: {exc}"})
                    continue
                complete.append((client, message))
            elif len(client.buffer) > MAX_REQUEST:
                self.answer(client, {"ok": False, "error": "request too long"})
        now = time.monotonic()
        for client in list(self.clients.values()):
            if not client.received and now - client.since > REQUEST_TIMEOUT:
                self.drop(client)
        return complete

    def answer(self, client: Client, reply: dict) -> None:
        """Send the one answer line and close (answers are small: they fit in the socket buffer)."""
        try:
            client.sock.setblocking(True)
            client.sock.settimeout(1.0)
            client.sock.sendall(json.dumps(reply).encode() + b"\n")
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
        try:
            os.unlink(self.path)
        except OSError:
            pass


def request(path: str, message: dict, timeout: float = 120.0) -> dict:
    """Send one request to the server listening on `path` and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no server: {path} does not exist") from None
    except ConnectionRefusedError:
        raise ControlError(f"no server is listening on {path}") from None
    except socket.timeout:
        raise ControlError(f"no answer from {path} within {timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to {path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"unreadable answer from {path}: {data[:200]!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"unreadable answer from {path}: {data[:200]!r}")
    return reply
