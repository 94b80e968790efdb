# TLS for the hot path: OpenSSL's libssl called straight from the worker's loop. A TlsContext is one
# certificate and the server's TLS settings (built in each worker at boot, so a reload reads renewed files);
# a TlsTransport is one connection's SSL object driving the non-blocking socket: the handshake happens
# inside the first reads, WANT_READ/WANT_WRITE become EAGAIN (and, for a read that must write first,
# EPOLLOUT interest), files go out by sendfile when kernel TLS encrypts, else are read and encrypted here,
# and close sends close_notify. Session tickets are sealed with the keys the master shares and rotates.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, ECONNRESET, EPIPE, errno
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy, strlen
from posix.unistd cimport pread

from fastcluster.core.syscalls cimport EPOLLOUT, MSG_NOSIGNAL, SHUT_WR, iovec, recv, send, shutdown

cdef extern from *:
    """
    #include <errno.h>
    #include <openssl/core_names.h>
    #include <openssl/params.h>
    static inline void fastcluster_set_errno(int value) { errno = value; }
    static inline int fastcluster_ticket_mac(EVP_MAC_CTX *mac, unsigned char *key) {
        OSSL_PARAM params[3];
        params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
        params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
        params[2] = OSSL_PARAM_construct_end();
        return EVP_MAC_CTX_set_params(mac, params);
    }
    static inline uint64_t fastcluster_load_generation(const unsigned char *ring) {
        return __atomic_load_n((const uint64_t *)ring, __ATOMIC_ACQUIRE);
    }
    #ifdef OPENSSL_NO_KTLS
    #define FASTCLUSTER_OPENSSL_KTLS 0
    #else
    #define FASTCLUSTER_OPENSSL_KTLS 1
    #endif
    """
    void set_errno "fastcluster_set_errno"(int value) nogil
    int ticket_mac "fastcluster_ticket_mac"(EVP_MAC_CTX *mac, unsigned char *key) nogil
    uint64_t load_generation "fastcluster_load_generation"(const unsigned char *ring) nogil
    int OPENSSL_KTLS "FASTCLUSTER_OPENSSL_KTLS"

# One TLS record's plaintext at most: a file is read and encrypted a record at a time.
DEF RECORD = 16384
DEF INT_MAX = 2147483647

# ALPN: the protocols offered, in wire format (length-prefixed).
cdef const char *ALPN_PROTOCOLS = b"\x08http/1.1"
# Sessions resumed from a ticket are only valid for contexts with this id (OpenSSL requires one once
# client certificates are verified).
cdef bytes SESSION_CONTEXT = b"fastcluster"
MIN_VERSIONS = {"TLSv1.2": TLS1_2_VERSION, "TLSv1.3": TLS1_3_VERSION}
CERT_REQS = {"none": SSL_VERIFY_NONE, "optional": SSL_VERIFY_PEER,
             "required": SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT}
# Session ticket keys, as tls.TicketKeys lays them out in shared memory: the generation (a uint64), then
# TICKET_KEY_SLOTS keys; generation g is in slot g % TICKET_KEY_SLOTS. A key is a 16-byte name, a 32-byte
# HMAC-SHA256 key and a 32-byte AES-256 key.
cdef enum:
    KEY_SIZE = 80
    KEY_SLOTS = 3
    KEYS_ACCEPTED = 2  # generations that open tickets: the current one and the one before
TICKET_KEY_SIZE = KEY_SIZE
TICKET_KEY_SLOTS = KEY_SLOTS
TICKET_KEYS_ACCEPTED = KEYS_ACCEPTED
#: Whether the linked OpenSSL was built with kernel TLS.
OPENSSL_HAS_KTLS = bool(OPENSSL_KTLS)
# What a plain-HTTP request on a TLS port is answered with (as nginx does), before the connection closes.
cdef bytes PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 46\r\nConnection: close\r\n\r\n"
    b"The plain HTTP request was sent to HTTPS port\n")


class TlsError(Exception):
    """A certificate, key or setting OpenSSL refused; the message says which and why."""


cdef str last_error():
    cdef unsigned long code = ERR_get_error()
    cdef const char *reason
    ERR_clear_error()
    if code == 0:
        return "unknown error"
    reason = ERR_reason_error_string(code)
    return reason.decode("latin-1") if reason != NULL else f"error {code:#x}"


cdef int give_password(char *buf, int size, int rwflag, void *userdata) noexcept nogil:
    cdef const char *password = <const char *>userdata
    cdef int length
    if password == NULL:
        return 0
    length = <int>strlen(password)
    if length > size:
        return 0
    memcpy(buf, password, length)
    return length


cdef int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in_,
                     unsigned int inlen, void *arg) noexcept nogil:
    """http/1.1 when the client offers it; a client offering only other protocols (h2) gets no ALPN
    answer and may go on with HTTP/1.1 or hang up."""
    cdef const unsigned char *ours = <const unsigned char *>ALPN_PROTOCOLS
    if SSL_select_next_proto(<unsigned char **>out, outlen, ours, 9, in_, inlen) != OPENSSL_NPN_NEGOTIATED:
        return SSL_TLSEXT_ERR_NOACK
    return SSL_TLSEXT_ERR_OK


cdef int choose_certificate(SSL *ssl, int *alert, void *arg) noexcept with gil:
    """SNI: switch the connection to the certificate named for the server name the client asked for."""
    cdef const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)
    cdef TlsContext default = <TlsContext>arg
    cdef TlsContext chosen
    if name == NULL:
        return SSL_TLSEXT_ERR_OK
    wanted = name.decode("latin-1").lower()
    found = default.by_name.get(wanted)
    if found is None and "." in wanted:
        found = default.by_name.get("*." + wanted.split(".", 1)[1])
    if found is not None:
        chosen = <TlsContext>found
        SSL_set_SSL_CTX(ssl, chosen.ctx)
    return SSL_TLSEXT_ERR_OK


cdef inline const unsigned char *ticket_key(const unsigned char *ring, uint64_t generation) noexcept nogil:
    return ring + 8 + (generation % KEY_SLOTS) * KEY_SIZE


cdef int seal_ticket(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cipher,
                     EVP_MAC_CTX *mac, int encrypt) noexcept nogil:
    """Session tickets: sealed with the current generation's key; opened with the current one or the one
    before (then 2: OpenSSL issues a fresh ticket under the current key); any other is refused (0: a full
    handshake). The keys are read from shared memory at each call, so a rotation reaches every worker at
    once."""
    cdef const unsigned char *ring = <const unsigned char *>SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl))
    cdef uint64_t generation = load_generation(ring), age
    cdef const unsigned char *key
    if encrypt:
        key = ticket_key(ring, generation)
        if RAND_bytes(iv, 16) != 1:
            return -1
        memcpy(name, key, 16)
        if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key + 48, iv) != 1
                or ticket_mac(mac, <unsigned char *>key + 16) != 1):
            return -1
        return 1
    for age in range(min(<uint64_t>KEYS_ACCEPTED, generation + 1)):
        key = ticket_key(ring, generation - age)
        if memcmp(name, key, 16) == 0:
            if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key + 48, iv) != 1
                    or ticket_mac(mac, <unsigned char *>key + 16) != 1):
                return -1
            return 1 if age == 0 else 2
    return 0


cdef class TlsContext:
    """One certificate with the server's TLS settings (an SSL_CTX)."""

    def __cinit__(self, str certfile, str keyfile=None, *, str password=None, str ca_certs=None,
                  str cert_reqs="none", str ciphers=None, str min_version="TLSv1.2", ticket_keys=None,
                  bint ktls=False):
        self.by_name = {}
        self.ctx = SSL_CTX_new(TLS_server_method())
        if self.ctx == NULL:
            raise TlsError(last_error())
        SSL_CTX_set_options(self.ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION
                            | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF)
        # Partial writes: a write reports each record sent, so a full socket leaves the rest queued by us.
        # Moving buffer: a write retried after EAGAIN comes from our pending queue, not the first pointer.
        # Release buffers: idle keep-alive connections hold no 34 KiB of OpenSSL buffers.
        SSL_CTX_set_mode(self.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                         | SSL_MODE_RELEASE_BUFFERS)
        if min_version not in MIN_VERSIONS:
            raise TlsError(f"unknown minimum version {min_version!r} (TLSv1.2 or TLSv1.3)")
        SSL_CTX_set_min_proto_version(self.ctx, MIN_VERSIONS[min_version])
        if password is not None:
            self.password = password.encode()
            SSL_CTX_set_default_passwd_cb_userdata(self.ctx, <void *>PyBytes_AS_STRING(self.password))
        SSL_CTX_set_default_passwd_cb(self.ctx, give_password)
        if SSL_CTX_use_certificate_chain_file(self.ctx, certfile.encode()) != 1:
            raise TlsError(f"cannot load certificate {certfile}: {last_error()}")
        keyfile = keyfile or certfile
        if SSL_CTX_use_PrivateKey_file(self.ctx, keyfile.encode(), SSL_FILETYPE_PEM) != 1:
            raise TlsError(f"cannot load key {keyfile}: {last_error()}")
        if SSL_CTX_check_private_key(self.ctx) != 1:
            raise TlsError(f"key {keyfile} does not match certificate {certfile}: {last_error()}")
        if ciphers and SSL_CTX_set_cipher_list(self.ctx, ciphers.encode()) != 1:
            raise TlsError(f"no usable cipher in {ciphers!r}: {last_error()}")
        if cert_reqs not in CERT_REQS:
            raise TlsError(f"unknown client certificate requirement {cert_reqs!r}")
        if ca_certs and SSL_CTX_load_verify_locations(self.ctx, ca_certs.encode(), NULL) != 1:
            raise TlsError(f"cannot load CA certificates {ca_certs}: {last_error()}")
        if cert_reqs != "none" and not ca_certs:
            raise TlsError("verifying client certificates needs CA certificates (--ssl-ca-certs)")
        SSL_CTX_set_verify(self.ctx, CERT_REQS[cert_reqs], NULL)
        SSL_CTX_set_alpn_select_cb(self.ctx, select_alpn, NULL)
        # Resumption is by tickets, which every worker opens: no per-worker store of sessions (as nginx by
        # default), whose inserts and expiry cost every full TLS 1.2 handshake and which only the same
        # worker could use.
        SSL_CTX_set_session_cache_mode(self.ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL)
        SSL_CTX_set_session_id_context(self.ctx, <const unsigned char *>PyBytes_AS_STRING(SESSION_CONTEXT),
                                       PyBytes_GET_SIZE(SESSION_CONTEXT))
        if ticket_keys is not None:
            self.use_ticket_keys(ticket_keys)
        if ktls:
            # OpenSSL hands the keys to the kernel after the handshake when it takes the cipher (AES-GCM);
            # otherwise the connection simply stays in user space.
            SSL_CTX_set_options(self.ctx, SSL_OP_ENABLE_KTLS)

    cdef void use_ticket_keys(self, ticket_keys) except *:
        """Seal tickets with the keys in `ticket_keys`, writable shared memory laid out as described at
        TICKET_KEY_SIZE (kept referenced: the callback reads it for the life of the context)."""
        cdef unsigned char[::1] ring = ticket_keys
        if ring.shape[0] < 8 + KEY_SLOTS * KEY_SIZE:
            raise TlsError("session ticket key memory is too small")
        self.ticket_keys = ring
        SSL_CTX_set_app_data(self.ctx, <void *>&ring[0])
        SSL_CTX_set_tlsext_ticket_key_evp_cb(self.ctx, seal_ticket)

    def __dealloc__(self):
        if self.ctx != NULL:
            SSL_CTX_free(self.ctx)

    def add_name(self, str name, TlsContext other) -> None:
        """Serve `other`'s certificate to clients asking for `name` (SNI; "*.example.com" matches one
        label)."""
        if not self.by_name:
            SSL_CTX_set_tlsext_servername_callback(self.ctx, choose_certificate)
            SSL_CTX_set_tlsext_servername_arg(self.ctx, <void *>self)
        self.by_name[name.lower()] = other

    cdef TlsTransport transport(self, int fd):
        cdef TlsTransport made = TlsTransport.__new__(TlsTransport)
        made.secure = True
        made.context = self
        made.ssl = SSL_new(self.ctx)
        if made.ssl == NULL or SSL_set_fd(made.ssl, fd) != 1:
            raise TlsError(last_error())
        SSL_set_accept_state(made.ssl)
        return made


cdef class TlsTransport(Transport):
    """One connection's TLS: SSL_read/SSL_write on its non-blocking socket."""

    cdef ssize_t read(self, int fd, char *buffer, size_t size) noexcept:
        cdef int result, error
        cdef size_t total = 0
        self.read_wants = 0
        while True:
            result = SSL_read(self.ssl, buffer + total, <int>min(size - total, INT_MAX))
            if result <= 0:
                if total:
                    ERR_clear_error()
                    return total  # the error, if it lasts, comes back on the next read
                error = SSL_get_error(self.ssl, result)
                if error == SSL_ERROR_WANT_WRITE:
                    self.read_wants = EPOLLOUT  # the handshake's answer waits for room in the socket
                elif error == SSL_ERROR_SSL and ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST:
                    self.refuse_plain_http(fd, buffer, size)
                return self.failed(error)
            total += result
            # Decrypted bytes OpenSSL holds are not socket readiness: take them now.
            if total == size or SSL_pending(self.ssl) == 0:
                return total

    cdef ssize_t write(self, int fd, const char *data, size_t size) noexcept:
        cdef int result
        cdef size_t total = 0
        while total < size:
            result = SSL_write(self.ssl, data + total, <int>min(size - total, INT_MAX))
            if result <= 0:
                if total:
                    ERR_clear_error()
                    return total  # the rest is retried from here, as OpenSSL requires
                return self.failed(SSL_get_error(self.ssl, result))
            total += result
        return total

    cdef ssize_t write_parts(self, int fd, iovec *parts, int count) noexcept:
        cdef ssize_t total = 0, done
        cdef int i
        for i in range(count):
            done = self.write(fd, <const char *>parts[i].iov_base, parts[i].iov_len)
            if done < 0:
                return total if total else done
            total += done
            if <size_t>done < parts[i].iov_len:
                break
        return total

    cdef ssize_t send_file(self, int fd, int file_fd, long *offset, size_t count) noexcept:
        """sendfile's contract: sendfile itself when kernel TLS encrypts this connection's output, else by
        reading the file a record at a time and encrypting it (a write that must be retried reads the same
        bytes again from the same offset)."""
        cdef char chunk[RECORD]
        cdef ssize_t total = 0, got, done
        if BIO_get_ktls_send(SSL_get_wbio(self.ssl)):
            done = SSL_sendfile(self.ssl, file_fd, offset[0], count, 0)
            if done <= 0:
                return self.failed(SSL_get_error(self.ssl, <int>done))
            offset[0] += done
            return done
        while <size_t>total < count:
            got = pread(file_fd, chunk, min(count - total, RECORD), offset[0])
            if got <= 0:
                return total if total else got
            done = self.write(fd, chunk, got)
            if done < 0:
                return total if total else done
            offset[0] += done
            total += done
            if done < got:
                break
        return total

    cdef ssize_t failed(self, int error) noexcept:
        """An SSL_read/SSL_write that did nothing (SSL_get_error's code), as a syscall's -1 and errno."""
        if error == SSL_ERROR_WANT_READ or error == SSL_ERROR_WANT_WRITE:
            set_errno(EAGAIN)
            return -1
        ERR_clear_error()  # a stale error would be taken for the next connection's
        if error == SSL_ERROR_ZERO_RETURN:
            return 0
        if error == SSL_ERROR_SSL or errno == 0:
            set_errno(ECONNRESET)
        return -1

    cdef void refuse_plain_http(self, int fd, char *buffer, size_t size) noexcept:
        """A plain HTTP request reached the TLS port: read what it sent (so closing does not reset our
        answer away), tell it in plain HTTP, as nginx does, and end the connection."""
        while recv(fd, buffer, size, 0) > 0:
            pass
        send(fd, PyBytes_AS_STRING(PLAIN_HTTP_ANSWER), PyBytes_GET_SIZE(PLAIN_HTTP_ANSWER), MSG_NOSIGNAL)
        shutdown(fd, SHUT_WR)

    cdef void shutdown_write(self, int fd) noexcept:
        if not SSL_get_shutdown(self.ssl) & SSL_SENT_SHUTDOWN and SSL_is_init_finished(self.ssl):
            SSL_shutdown(self.ssl)  # close_notify: the client knows the stream ended here, not truncated
            ERR_clear_error()
        shutdown(fd, SHUT_WR)

    cdef void release(self) noexcept:
        if self.ssl == NULL:
            return
        if not SSL_get_shutdown(self.ssl) & SSL_SENT_SHUTDOWN and SSL_is_init_finished(self.ssl):
            SSL_shutdown(self.ssl)
        ERR_clear_error()
        SSL_free(self.ssl)
        self.ssl = NULL

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)

    def tls_extension(self) -> dict:
        """The session as the ASGI TLS extension describes it: version, cipher suite, the client's
        certificate chain (PEM, its own first), its subject (RFC 4514) and why it did not verify."""
        cdef X509 *peer
        cdef STACK_OF_X509 *chain
        cdef const SSL_CIPHER *cipher
        cdef long verified
        cdef int i
        if self.details is not None or self.ssl == NULL:
            return self.details or {}
        cipher = SSL_get_current_cipher(self.ssl)
        chain_pem = []
        subject = error = None
        peer = SSL_get1_peer_certificate(self.ssl)
        if peer != NULL:
            chain_pem.append(pem_of(peer))
            subject = name_of(peer)
            chain = SSL_get_peer_cert_chain(self.ssl)  # on a server: the chain without the client's own
            if chain != NULL:
                for i in range(sk_X509_num(chain)):
                    chain_pem.append(pem_of(sk_X509_value(chain, i)))
            X509_free(peer)
            verified = SSL_get_verify_result(self.ssl)
            if verified != X509_V_OK:
                error = X509_verify_cert_error_string(verified).decode("latin-1")
        self.details = {
            "server_cert": None,
            "client_cert_chain": chain_pem,
            "client_cert_name": subject,
            "client_cert_error": error,
            "tls_version": SSL_version(self.ssl),
            "cipher_suite": SSL_CIPHER_get_protocol_id(cipher) if cipher != NULL else None,
        }
        return self.details

    def ssl_environ(self) -> dict:
        """The session in the WSGI environ keys Apache's mod_ssl made usual."""
        cdef const SSL_CIPHER *cipher
        if self.ssl == NULL:
            return {}
        details = self.tls_extension()
        cipher = SSL_get_current_cipher(self.ssl)
        environ = {
            "SSL_PROTOCOL": SSL_get_version(self.ssl).decode("ascii"),
            "SSL_CIPHER": SSL_CIPHER_get_name(cipher).decode("ascii") if cipher != NULL else "",
            "SSL_SESSION_RESUMED": "Resumed" if SSL_session_reused(self.ssl) else "Initial",
            "SSL_CLIENT_VERIFY": "NONE",
        }
        if details["client_cert_chain"]:
            environ["SSL_CLIENT_CERT"] = details["client_cert_chain"][0]
            environ["SSL_CLIENT_S_DN"] = details["client_cert_name"]
            environ["SSL_CLIENT_VERIFY"] = ("SUCCESS" if details["client_cert_error"] is None
                                            else "FAILED:" + details["client_cert_error"])
            for i, pem in enumerate(details["client_cert_chain"][1:]):
                environ[f"SSL_CLIENT_CERT_CHAIN_{i}"] = pem
        return environ


cdef str pem_of(X509 *cert):
    cdef BIO *bio = BIO_new(BIO_s_mem())
    cdef char *data
    cdef long length
    try:
        PEM_write_bio_X509(bio, cert)
        length = BIO_get_mem_data(bio, &data)
        return data[:length].decode("ascii")
    finally:
        BIO_free(bio)


cdef str name_of(X509 *cert):
    cdef BIO *bio = BIO_new(BIO_s_mem())
    cdef char *data
    cdef long length
    try:
        X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253)
        length = BIO_get_mem_data(bio, &data)
        return data[:length].decode("utf-8", "replace")
    finally:
        BIO_free(bio)
