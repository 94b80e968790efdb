# Proxy headers: the client and scheme a trusted proxy reports, for the ASGI and the WSGI adapter.
from fastcluster.core.connection cimport Connection


cdef class ProxyHeaders:
    cdef:
        # --forwarded-allow-ips: every peer (*), Unix-socket peers (unix:), these networks.
        readonly bint trust_all
        readonly bint trust_unix
        readonly tuple networks
        # Whether a peer address is trusted, by its text (bounded: the addresses are the clients').
        dict peers
        # (client, scheme) by the proxy headers of a trusted peer's request (bounded, small ones only).
        dict said

    cdef object resolve(self, Connection conn, list headers)
    cdef object from_headers(self, Connection conn, list headers)
    cdef bint trusts_peer(self, Connection conn, object peer) except -1
    cdef bint trusts_node(self, object node) except -1
