"""The control socket: a Unix socket owned by the master that speaks line-delimited JSON. A client sends one
request line ({"command": "status" | "reload" | "scale" | "stop", ...}) and reads one answer line
({"ok": true|false, ...}); reload and scale answer once they are finished. The master serves it from its
loop, never blocking on a client. `request()` is the client side, used by the CLI."""

from __future__ import annotations

import json
import os
import socket
import stat

from fastcluster.oneshot import Client, OneShotServer

MAX_REQUEST = 65536
#: A client that has not sent a complete request line within this many seconds is dropped.
REQUEST_TIMEOUT = 10.0


class ControlError(Exception):
    """No server answers on the control socket, or it answered something unreadable."""


class ControlServer(OneShotServer):
    max_request = MAX_REQUEST
    request_timeout = REQUEST_TIMEOUT

    def __init__(self, path: str) -> None:
        self.path = path
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
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o077)  # only our user may control the server
        try:
            listener.bind(path)
        finally:
            os.umask(umask)
        listener.listen(64)
        listener.setblocking(False)
        super().__init__(listener)

    def complete(self, buffer: bytes) -> bool:
        return b"\n" in buffer

    def too_long(self, client: Client) -> None:
        self.answer(client, {"ok": False, "error": "request too long"})

    def requests(self, ready: set[int]) -> list[tuple[Client, dict]]:
        """Accept and read what is ready; the complete requests, each with the client to answer."""
        complete = []
        for client in self.receive(ready):
            try:
                message = json.loads(client.buffer.split(b"\n", 1)[0])
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.answer(client, {"ok": False, "error": f"unreadable request: {exc}"})
                continue
            complete.append((client, message))
        return complete

    def answer(self, client: Client, reply: dict) -> None:
        self.reply(client, json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        super().close()
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
