# Proxy headers: the client and the scheme that a trusted proxy in front reports in X-Forwarded-For,
# X-Forwarded-Proto or Forwarded (RFC 7239), for the ASGI and the WSGI adapter alike. A request without such
# a header costs one scan of its header names in C; the headers are parsed only when one is there, and both
# whether a peer is trusted (per address) and what a set of proxy headers says are remembered.
# cython: boundscheck=True, wraparound=True
import ipaddress
import re

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.string cimport memcmp, memcpy

#: What --forwarded-allow-ips is when neither it nor FORWARDED_ALLOW_IPS is given: a proxy on this host.
DEFAULT_ALLOWED = "127.0.0.1,::1,unix:"
# Peer addresses whose trust a worker remembers; proxy headers whose meaning it remembers, and their size.
DEF MAX_REMEMBERED_PEERS = 4096
DEF MAX_REMEMBERED = 4096
DEF MAX_REMEMBERED_SIZE = 512
# The schemes X-Forwarded-Proto and proto= may name, and the HTTP scheme each means for a request.
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One forwarded-pair (RFC 7239 section 4): token "=" (token / quoted-string), with the spaces around it.
PAIR = re.compile(rf'[ \t]*({_TOKEN})=(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")[ \t]*')
QUOTED_PAIR = re.compile(r"\\(.)")
# An obfuscated node or port (RFC 7239 section 6.3).
OBFUSCATED = re.compile(r"_[0-9A-Za-z._-]+")


cdef bint is_proxy_header(object name) noexcept:
    """name (lower-cased) is X-Forwarded-For, X-Forwarded-Proto or Forwarded."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(name)
    cdef const char *chars = PyBytes_AS_STRING(name)
    if size == 9:
        return memcmp(chars, b"forwarded", 9) == 0
    if size == 15:
        return memcmp(chars, b"x-forwarded-for", 15) == 0
    if size == 17:
        return memcmp(chars, b"x-forwarded-proto", 17) == 0
    return False


cdef bytes proxy_lines(list headers):
    """The request's proxy headers as name, value, name, value... joined by line feeds (which no value
    holds): one bytes, quick to hash, the key of what they were found to say."""
    cdef Py_ssize_t index, size = -1
    cdef char *out
    cdef object name, value
    for index in range(PyList_GET_SIZE(headers)):
        name = <object>PyTuple_GET_ITEM(<object>PyList_GET_ITEM(headers, index), 0)
        if is_proxy_header(name):
            value = <object>PyTuple_GET_ITEM(<object>PyList_GET_ITEM(headers, index), 1)
            size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 2
    if size < 0:
        return b""
    cdef bytes lines = PyBytes_FromStringAndSize(NULL, size)
    out = PyBytes_AS_STRING(lines)
    for index in range(PyList_GET_SIZE(headers)):
        name = <object>PyTuple_GET_ITEM(<object>PyList_GET_ITEM(headers, index), 0)
        if is_proxy_header(name):
            value = <object>PyTuple_GET_ITEM(<object>PyList_GET_ITEM(headers, index), 1)
            if out != PyBytes_AS_STRING(lines):
                out[0] = c'\n'
                out += 1
            memcpy(out, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
            out += PyBytes_GET_SIZE(name)
            out[0] = c'\n'
            memcpy(out + 1, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
            out += 1 + PyBytes_GET_SIZE(value)
    return lines


def parse_allowed(text: str) -> tuple[bool, bool, tuple]:
    """--forwarded-allow-ips as (trust every peer, trust Unix-socket peers, networks); ValueError names the
    entry that is none of an IP address, a network, * or unix:."""
    trust_all = trust_unix = False
    networks = []
    for entry in text.split(","):
        entry = entry.strip()
        if entry == "*":
            trust_all = True
        elif entry == "unix:":
            trust_unix = True
        else:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address, a network, '*' or 'unix:'") from None
    return trust_all, trust_unix, tuple(networks)


def node_address(text: str):
    """(address, port) of a forwarded node: an IP address (an IPv6 one in brackets when a port follows)
    with an optional port; an obfuscated identifier (_name) or unknown stands for itself as a str. None when
    it is none of these."""
    text = text.strip()
    port = 0
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        if rest:
            port = node_port(rest[1:])
        address = ip_address(host)
        if address is None or address.version != 6 or port is None:
            return None
        return address, port
    if text.count(":") == 1:  # IPv4 or an identifier, with a port
        text, _, port_text = text.partition(":")
        port = node_port(port_text)
        if port is None:
            return None
    if text == "unknown" or OBFUSCATED.fullmatch(text):
        return text, port
    address = ip_address(text)
    return None if address is None else (address, port)


def node_port(text: str):
    """A node's port: its number, 0 for an obfuscated one, None when it is neither."""
    if text.isdigit() and text.isascii() and len(text) <= 5 and int(text) <= 65535:
        return int(text)
    return 0 if OBFUSCATED.fullmatch(text) else None


def ip_address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def forwarded_elements(text: str):
    """The elements of a Forwarded header, each a dict of its parameters by lower-cased name; None when it is
    malformed (a pair that is not token=value, a parameter twice in one element)."""
    elements = []
    element = {}
    position, end = 0, len(text)
    while True:
        pair = PAIR.match(text, position)
        if pair is not None:
            name, token, quoted = pair.groups()
            name = name.lower()
            if name in element:
                return None
            element[name] = token if token is not None else QUOTED_PAIR.sub(r"\1", quoted)
            position = pair.end()
        else:  # an empty pair or element, which the list syntax allows
            while position < end and text[position] in " \t":
                position += 1
        if position == end:
            break
        if text[position] == ",":
            if element:
                elements.append(element)
            element = {}
        elif text[position] != ";":
            return None
        position += 1
    if element:
        elements.append(element)
    return elements


cdef class ProxyHeaders:
    """Which peers may speak for their clients, and what their proxy headers say (one per worker)."""

    def __init__(self, allowed: str = DEFAULT_ALLOWED) -> None:
        self.trust_all, self.trust_unix, self.networks = parse_allowed(allowed)
        self.peers = {}
        self.said = {}

    cdef object resolve(self, Connection conn, list headers):
        """(client, scheme) of a request whose proxy headers come from a trusted peer; None when it has none
        or they change nothing (then the peer's address and http stand)."""
        cdef Py_ssize_t index
        for index in range(PyList_GET_SIZE(headers)):
            if is_proxy_header(<object>PyTuple_GET_ITEM(<object>PyList_GET_ITEM(headers, index), 0)):
                return self.from_headers(conn, headers)
        return None

    cdef object from_headers(self, Connection conn, list headers):
        peer = conn.client_address()
        if not self.trusts_peer(conn, peer):
            return None
        key = proxy_lines(headers)
        said = self.said.get(key)
        if said is None:
            said = self.parse(key)
            if len(key) <= MAX_REMEMBERED_SIZE:
                if len(self.said) >= MAX_REMEMBERED:
                    self.said.clear()
                self.said[key] = said
        client, scheme = said
        if client is None and scheme is None:
            return None
        return (peer if client is None else client), scheme or "http"

    def parse(self, bytes lines) -> tuple:
        """(client, scheme) that these proxy headers (proxy_lines) give, each None when they give none."""
        forwarded_for, forwarded_proto, forwarded = [], [], []
        found = lines.split(b"\n")
        for name, value in zip(found[::2], found[1::2]):
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                forwarded_proto.append(value.decode("latin-1"))
            else:
                forwarded.append(value.decode("latin-1"))
        node = proto = None
        if forwarded_for or forwarded_proto:
            # The X-Forwarded-* pair is what most proxies set: when a request has it, a Forwarded header is
            # not read (a proxy that sets only those may pass on a client's Forwarded untouched).
            hops = ",".join(forwarded_for).split(",") if forwarded_for else []
            chosen = self.client_hop(hops) if hops else None
            if forwarded_proto:
                protos = ",".join(forwarded_proto).split(",")
                # Proxies that append to both lists keep them aligned: the client's is at its hop's place.
                proto = protos[chosen[0] if chosen is not None and len(protos) == len(hops) else -1]
            if chosen is not None:
                node = chosen[1]
        else:
            elements = forwarded_elements(",".join(forwarded))
            chosen = self.client_element(elements) if elements else None
            if chosen is not None:
                node, proto = chosen[1], chosen[0].get("proto")
        scheme = SCHEMES.get(proto.strip().lower()) if proto is not None else None
        return (None if node is None else (str(node[0]), node[1])), scheme

    def client_hop(self, list hops):
        """(place, node) of the client in X-Forwarded-For: the right-most hop not trusted, the left-most when
        all are; None when a hop on the way there is malformed."""
        for place in range(len(hops) - 1, -1, -1):
            node = node_address(hops[place])
            if node is None:
                return None
            if not self.trusts_node(node[0]):
                return place, node
        return 0, node

    def client_element(self, list elements):
        """(element, node) of the client in a Forwarded header, walked from the right as X-Forwarded-For; an
        element without for= ends the walk with no node (its proto= still counts). None when malformed."""
        for place in range(len(elements) - 1, -1, -1):
            element = elements[place]
            if "for" not in element:
                return element, None
            node = node_address(element["for"])
            if node is None:
                return None
            if not self.trusts_node(node[0]) or place == 0:
                return element, node

    cdef bint trusts_peer(self, Connection conn, object peer) except -1:
        if self.trust_all:
            return True
        if peer is None:
            return self.trust_unix and conn.peer == "unix"
        host = peer[0]
        trusted = self.peers.get(host)
        if trusted is None:
            trusted = self.trusts_node(ipaddress.ip_address(host))
            if len(self.peers) >= MAX_REMEMBERED_PEERS:
                self.peers.clear()
            self.peers[host] = trusted
        return trusted

    cdef bint trusts_node(self, object node) except -1:
        """node (an address, or an identifier: never trusted) is in --forwarded-allow-ips."""
        if self.trust_all:
            return True
        if isinstance(node, str):
            return False
        if node.version == 6 and node.ipv4_mapped is not None:
            node = node.ipv4_mapped  # a dual-stack socket's IPv4 peer
        for network in self.networks:
            if node in network:
                return True
        return False
