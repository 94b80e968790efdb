"""The control socket: a Unix socket owned by the master that speaks line-delimited JSON. A client sends one
request line ({"command": "status" | "reload" | "scale" | "stop", ...}) and reads one answer line
({"ok": true|false, ...}); reload and scale answer once they are finished. The master serves it from its
loop, never blocking on a client. `request()` is the client side, used by the CLI.

Where it lives unless --control says: root's under /run/fastcluster, anyone else's in a directory only they
can use ($XDG_RUNTIME_DIR/fastcluster, else /tmp/fastcluster-UID), checked before every use so another
user cannot plant a socket there; named after the server's first listening address."""

from __future__ import annotations

import glob
import json
import os
import socket
import stat

from fastcluster.oneshot import Client, OneShotServer

MAX_REQUEST = 65536
#: A client that has not sent a complete request line within this many seconds is dropped.
REQUEST_TIMEOUT = 10.0


ROOT_DIRECTORY = "/run/fastcluster"
PREFIX = "fastcluster-"


class ControlError(Exception):
    """No server answers on the control socket, or it answered something unreadable."""


def control_directory() -> str:
    """The directory of default control sockets, made if missing; OSError if it is not safe to use."""
    uid = os.geteuid()
    if uid == 0:
        path = ROOT_DIRECTORY
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = os.path.join(os.environ["XDG_RUNTIME_DIR"], "fastcluster")
    else:
        path = f"/tmp/fastcluster-{uid}"
    try:
        os.mkdir(path, 0o755 if uid == 0 else 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    shared = info.st_mode & (0o022 if uid == 0 else 0o077)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or shared:
        raise OSError(f"control directory {path} is not private (owner uid {info.st_uid}, mode "
                      f"{stat.filemode(info.st_mode)}; it must be a directory of uid {uid} that no one "
                      f"else can write{' or read' if uid else ''}): fix or remove it, or give --control PATH")
    return path


def control_name(sock: socket.socket) -> str:
    """The name of a server's control socket after one of its listening sockets: HOST-PORT, or unix-NAME."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        name = address.decode(errors="replace") if isinstance(address, bytes) else address
        return "unix-" + (os.path.splitext(os.path.basename(name.strip("\0")))[0] or "abstract")
    return f"{address[0]}-{address[1]}"


def default_control_path(listeners: list[socket.socket]) -> str:
    """A TCP address first (what `--port` finds), else a Unix one."""
    first = sorted(listeners, key=lambda sock: sock.family == socket.AF_UNIX)[0]
    return os.path.join(control_directory(), f"{PREFIX}{control_name(first)}.sock")


def find_control_path(port: int, host: str | None) -> str:
    """The control socket of the server listening on host:port (any host, if only one server has port)."""
    directory = control_directory()
    if host is not None:
        return os.path.join(directory, f"{PREFIX}{host}-{port}.sock")
    found = sorted(glob.glob(os.path.join(glob.escape(directory), f"{PREFIX}*-{port}.sock")))
    if len(found) > 1:  # one may be left by a server that was killed
        found = [path for path in found if listening(path)] or found
    if len(found) > 1:
        hosts = ", ".join(os.path.basename(path)[len(PREFIX):-len(f"-{port}.sock")] for path in found)
        raise ControlError(f"several servers listen on port {port} (hosts {hosts}): choose with --host")
    if not found:
        raise ControlError(f"no server on port {port}: no control socket in {directory} (give --control "
                           "PATH if it was started with one)")
    return found[0]


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


def listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(path) == 0


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
