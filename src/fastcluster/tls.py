"""TLS settings: the --ssl-* flags checked in the master before forking, the session ticket keys all
workers share, and the worker's TLS contexts built from the files at boot (so a reload reads renewed
certificates)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from fastcluster.binds import Bind, listens_on


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
    # Made once in the master: a ticket issued by one worker resumes on any other, and across reloads.
    ticket_keys: bytes = field(default_factory=lambda: os.urandom(80), repr=False)


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

    options = dict(password=settings.password, ca_certs=settings.ca_certs, cert_reqs=settings.cert_reqs,
                   ciphers=settings.ciphers, min_version=settings.min_version,
                   ticket_keys=settings.ticket_keys)
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
