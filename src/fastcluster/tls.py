"""TLS settings: the --ssl-* flags checked in the master before forking, the session ticket keys all
workers share and the master rotates, whether kernel TLS can carry records (probed once, in the master),
and the worker's TLS contexts built from the files at boot (so a reload reads renewed certificates)."""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from fastcluster.binds import Bind, listens_on

TCP_ULP = 31  # linux/tcp.h: attach an upper-layer protocol ("tls") to a TCP socket


class TicketKeys:
    """Session ticket keys in anonymous shared memory made by the master before forking, so every worker,
    whenever it was forked, reads the same keys. The master rotates them: it writes a new key into the
    slot of the oldest generation (no longer accepted by anyone), then publishes the new generation.
    Workers read the generation at each ticket (core/tls.pyx, seal_ticket): the current key seals, the
    one before still opens."""

    def __init__(self) -> None:
        from fastcluster.core.tls import TICKET_KEY_SIZE, TICKET_KEY_SLOTS

        self.key_size, self.slots = TICKET_KEY_SIZE, TICKET_KEY_SLOTS
        self.memory = mmap.mmap(-1, 8 + self.slots * self.key_size)
        self.generation = 0
        self.write_key(0)

    def write_key(self, generation: int) -> None:
        start = 8 + (generation % self.slots) * self.key_size
        self.memory[start:start + self.key_size] = os.urandom(self.key_size)

    def rotate(self) -> int:
        """A new current key; the one before keeps opening tickets, older ones stop. The new generation."""
        self.write_key(self.generation + 1)
        self.generation += 1
        struct.pack_into("=Q", self.memory, 0, self.generation)  # one aligned 8-byte store: published
        return self.generation


@dataclass(frozen=True)
class TlsSettings:
    certfile: str
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    cert_reqs: str = "none"  # none | optional | required (mutual TLS)
    ciphers: str | None = None
    min_version: str = "TLSv1.2"
    # SNI: (server name, certificate file, key file) for each further certificate.
    sni: tuple[tuple[str, str, str], ...] = ()
    # Seconds a session ticket key opens tickets: a new key seals them every half of it.
    ticket_key_lifetime: float = 12 * 3600.0
    # Use kernel TLS where the kernel and OpenSSL offer it.
    ktls: bool = True
    # Made once in the master: a ticket issued by one worker resumes on any other, and across reloads.
    ticket_keys: TicketKeys = field(default_factory=TicketKeys, repr=False, compare=False)
    # Decided by the master as it starts, before forking (Master.run), not as the flags are read:
    # `config --show` reads them too and starts nothing. The workers' contexts read it rather than each
    # probing the kernel again at every boot.
    kernel_tls: KernelTls | None = None


def parse_sni(text: str) -> tuple[str, str, str]:
    """NAME=CERT:KEY (ValueError with a readable reason otherwise)."""
    name, equals, files = text.partition("=")
    certfile, colon, keyfile = files.partition(":")
    if not equals or not name or not certfile or not colon or not keyfile:
        raise ValueError(f"expected NAME=CERT:KEY, got {text!r}")
    return name, certfile, keyfile


def build_context(settings: TlsSettings):
    """The worker's TlsContext: the default certificate, with the SNI ones by name. Raises TlsError."""
    from fastcluster.core.tls import TlsContext

    # Undecided only for check(), before the master has probed: kernel TLS is an option no check depends on.
    ktls = settings.kernel_tls is not None and settings.kernel_tls.on
    options = dict(password=settings.password, ca_certs=settings.ca_certs, cert_reqs=settings.cert_reqs,
                   ciphers=settings.ciphers, min_version=settings.min_version,
                   ticket_keys=settings.ticket_keys.memory, ktls=ktls)
    default = TlsContext(settings.certfile, settings.keyfile, **options)
    for name, certfile, keyfile in settings.sni:
        default.add_name(name, TlsContext(certfile, keyfile, **options))
    return default


def check(settings: TlsSettings) -> str | None:
    """Why the settings cannot serve (one line), or None: built once in the master, as a worker will."""
    from fastcluster.core.tls import TlsError

    for flag, path in (("--ssl-certfile", settings.certfile), ("--ssl-keyfile", settings.keyfile),
                       ("--ssl-ca-certs", settings.ca_certs),
                       *(("--ssl-sni", path) for _, *paths in settings.sni for path in paths)):
        if path is not None and not os.access(path, os.R_OK):
            return f"{flag}: cannot read {path}"
    try:
        build_context(settings)
    except TlsError as exc:
        return str(exc)
    return None


def tls_listeners(sockets: list[socket.socket], binds: list[Bind], context) -> dict[int, object]:
    """The TlsContext of each listening socket whose bind serves https."""
    secure = [bind for bind in binds if bind.scheme == "https"]
    return {sock.fileno(): context for sock in sockets if any(listens_on(sock, bind) for bind in secure)}


def kernel_tls() -> tuple[bool, str]:
    """Whether kernel TLS can carry records here, and why not: OpenSSL built with it, and the kernel
    taking the "tls" upper-layer protocol on a connected TCP socket (tried, which also loads the module
    where we may)."""
    from fastcluster.core.tls import OPENSSL_HAS_KTLS

    if not OPENSSL_HAS_KTLS:
        return False, "OpenSSL was built without it"
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client.connect(listener.getsockname())
        try:
            client.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False, "the kernel offers no tls module; modprobe tls"
            return False, f"the kernel refuses the tls module ({exc.strerror})"
        finally:
            listener.accept()[0].close()
    return True, "on"


class KernelTls(NamedTuple):
    """Whether the workers' TLS contexts hand records to the kernel, and the one line the master logs at
    start about it."""
    on: bool
    line: str


def decide_kernel_tls(wanted: bool) -> KernelTls:
    """Kernel TLS as --ssl-ktls asks and this machine allows. Not probed under --no-ssl-ktls: the probe
    may load the kernel's module."""
    by_the_workers = "files over https are read and encrypted by the workers"
    if not wanted:
        return KernelTls(False, f"kernel TLS off (--no-ssl-ktls): {by_the_workers}")
    usable, why = kernel_tls()
    if not usable:
        return KernelTls(False, f"kernel TLS unavailable ({why}): {by_the_workers}")
    return KernelTls(True, "kernel TLS on: AES-GCM records are encrypted by the kernel and files go out by "
                           "sendfile")
