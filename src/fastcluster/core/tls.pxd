# C declarations of the OpenSSL (libssl 3) calls the TLS transport makes, and its classes.
from fastcluster.core.transport cimport Transport


cdef extern from "<openssl/ssl.h>" nogil:
    ctypedef struct SSL_CTX:
        pass
    ctypedef struct SSL:
        pass
    ctypedef struct SSL_METHOD:
        pass
    ctypedef struct SSL_CIPHER:
        pass
    ctypedef struct X509:
        pass
    ctypedef struct X509_NAME:
        pass
    ctypedef struct BIO:
        pass
    ctypedef struct BIO_METHOD:
        pass
    ctypedef struct OPENSSL_STACK:
        pass
    ctypedef OPENSSL_STACK STACK_OF_X509 "STACK_OF(X509)"
    ctypedef int (*pem_password_cb)(char *buf, int size, int rwflag, void *userdata)
    ctypedef int (*alpn_select_cb)(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                   const unsigned char *in_, unsigned int inlen, void *arg)
    ctypedef int (*servername_cb)(SSL *ssl, int *alert, void *arg)
    ctypedef struct EVP_CIPHER_CTX:
        pass
    ctypedef struct EVP_MAC_CTX:
        pass
    ctypedef int (*ticket_key_cb)(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cipher,
                                  EVP_MAC_CTX *mac, int encrypt)

    enum:
        SSL_ERROR_NONE
        SSL_ERROR_SSL
        SSL_ERROR_WANT_READ
        SSL_ERROR_WANT_WRITE
        SSL_ERROR_SYSCALL
        SSL_ERROR_ZERO_RETURN
        SSL_VERIFY_NONE
        SSL_VERIFY_PEER
        SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        SSL_FILETYPE_PEM
        SSL_TLSEXT_ERR_OK
        SSL_TLSEXT_ERR_NOACK
        OPENSSL_NPN_NEGOTIATED
        SSL_SENT_SHUTDOWN
        SSL_R_HTTP_REQUEST
        TLS1_2_VERSION
        TLS1_3_VERSION
        TLSEXT_NAMETYPE_host_name
        X509_V_OK
        SSL_SESS_CACHE_SERVER
        SSL_SESS_CACHE_NO_INTERNAL

    unsigned long long SSL_OP_NO_RENEGOTIATION
    unsigned long long SSL_OP_NO_COMPRESSION
    unsigned long long SSL_OP_CIPHER_SERVER_PREFERENCE
    unsigned long long SSL_OP_IGNORE_UNEXPECTED_EOF
    unsigned long long SSL_OP_ENABLE_KTLS
    long SSL_MODE_ENABLE_PARTIAL_WRITE
    long SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
    long SSL_MODE_RELEASE_BUFFERS

    const SSL_METHOD *TLS_server_method()
    SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
    void SSL_CTX_free(SSL_CTX *ctx)
    unsigned long long SSL_CTX_set_options(SSL_CTX *ctx, unsigned long long options)
    long SSL_CTX_set_mode(SSL_CTX *ctx, long mode)
    int SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version)
    int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file)
    int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type)
    int SSL_CTX_check_private_key(const SSL_CTX *ctx)
    void SSL_CTX_set_default_passwd_cb(SSL_CTX *ctx, pem_password_cb cb)
    void SSL_CTX_set_default_passwd_cb_userdata(SSL_CTX *ctx, void *userdata)
    int SSL_CTX_set_cipher_list(SSL_CTX *ctx, const char *text)
    int SSL_CTX_load_verify_locations(SSL_CTX *ctx, const char *cafile, const char *capath)
    void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, void *callback)
    void SSL_CTX_set_alpn_select_cb(SSL_CTX *ctx, alpn_select_cb cb, void *arg)
    int SSL_CTX_set_session_id_context(SSL_CTX *ctx, const unsigned char *sid_ctx, unsigned int sid_ctx_len)
    long SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode)
    int SSL_CTX_set_tlsext_ticket_key_evp_cb(SSL_CTX *ctx, ticket_key_cb cb)
    int SSL_CTX_set_app_data(SSL_CTX *ctx, void *arg)
    void *SSL_CTX_get_app_data(const SSL_CTX *ctx)
    SSL_CTX *SSL_get_SSL_CTX(const SSL *ssl)
    BIO *SSL_get_wbio(const SSL *ssl)
    ssize_t SSL_sendfile(SSL *ssl, int fd, long offset, size_t size, int flags)
    void SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, servername_cb cb)
    void SSL_CTX_set_tlsext_servername_arg(SSL_CTX *ctx, void *arg)
    int SSL_select_next_proto(unsigned char **out, unsigned char *outlen, const unsigned char *server,
                              unsigned int server_len, const unsigned char *client, unsigned int client_len)

    SSL *SSL_new(SSL_CTX *ctx)
    void SSL_free(SSL *ssl)
    int SSL_set_fd(SSL *ssl, int fd)
    void SSL_set_accept_state(SSL *ssl)
    int SSL_read(SSL *ssl, void *buf, int num)
    int SSL_write(SSL *ssl, const void *buf, int num)
    int SSL_pending(const SSL *ssl)
    int SSL_get_error(const SSL *ssl, int ret)
    int SSL_shutdown(SSL *ssl)
    int SSL_get_shutdown(const SSL *ssl)
    int SSL_is_init_finished(const SSL *ssl)
    SSL_CTX *SSL_set_SSL_CTX(SSL *ssl, SSL_CTX *ctx)
    const char *SSL_get_servername(const SSL *ssl, const int type)
    int SSL_version(const SSL *ssl)
    const char *SSL_get_version(const SSL *ssl)
    const SSL_CIPHER *SSL_get_current_cipher(const SSL *ssl)
    const char *SSL_CIPHER_get_name(const SSL_CIPHER *cipher)
    unsigned short SSL_CIPHER_get_protocol_id(const SSL_CIPHER *cipher)
    X509 *SSL_get1_peer_certificate(const SSL *ssl)
    STACK_OF_X509 *SSL_get_peer_cert_chain(const SSL *ssl)
    long SSL_get_verify_result(const SSL *ssl)
    int SSL_session_reused(const SSL *ssl)
    void SSL_get0_alpn_selected(const SSL *ssl, const unsigned char **data, unsigned int *len)


cdef extern from "<openssl/err.h>" nogil:
    unsigned long ERR_get_error()
    unsigned long ERR_peek_error()
    void ERR_clear_error()
    int ERR_GET_REASON(unsigned long error)
    const char *ERR_reason_error_string(unsigned long error)


cdef extern from "<openssl/x509.h>" nogil:
    void X509_free(X509 *cert)
    X509_NAME *X509_get_subject_name(const X509 *cert)
    int X509_NAME_print_ex(BIO *out, const X509_NAME *name, int indent, unsigned long flags)
    const char *X509_verify_cert_error_string(long error)
    unsigned long XN_FLAG_RFC2253
    int sk_X509_num(const STACK_OF_X509 *stack)
    X509 *sk_X509_value(const STACK_OF_X509 *stack, int index)


cdef extern from "<openssl/pem.h>" nogil:
    int PEM_write_bio_X509(BIO *out, const X509 *cert)


cdef extern from "<openssl/bio.h>" nogil:
    const BIO_METHOD *BIO_s_mem()
    BIO *BIO_new(const BIO_METHOD *method)
    int BIO_free(BIO *bio)
    long BIO_get_mem_data(BIO *bio, char **data)
    int BIO_get_ktls_send(BIO *bio)


cdef extern from "<openssl/evp.h>" nogil:
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct ENGINE:
        pass
    const EVP_CIPHER *EVP_aes_256_cbc()
    int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *engine,
                           const unsigned char *key, const unsigned char *iv)
    int EVP_DecryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *engine,
                           const unsigned char *key, const unsigned char *iv)


cdef extern from "<openssl/rand.h>" nogil:
    int RAND_bytes(unsigned char *buf, int num)


cdef class TlsContext:
    cdef:
        SSL_CTX *ctx
        bytes password
        # The session ticket keys, in memory the master shares with every worker and rotates.
        object ticket_keys
        # SNI: other certificates by lower-cased server name ("*.example.com" for a wildcard).
        dict by_name

    cdef TlsTransport transport(self, int fd)
    cdef void use_ticket_keys(self, ticket_keys) except *


cdef class TlsTransport(Transport):
    cdef:
        SSL *ssl
        TlsContext context
        # What ASGI apps see (tls_extension()), made once per connection when first asked for.
        dict details

    cdef ssize_t failed(self, int error) noexcept
    cdef void refuse_plain_http(self, int fd, char *buffer, size_t size) noexcept
