/* The SSL_CTX of native HBONE connections (weft-tls.c): TLS 1.3 only, HBONE's two AES-GCM suites, ALPN h2, the
 * peer's chain verified against the mesh roots and its result left for JavaScript to judge, tickets handed to
 * JavaScript (client) or issued statelessly with keys random per context (server), NSS key log lines on request. */
#define _GNU_SOURCE
#include "weft-hbone.h"
#include "weft-napi.h"
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static void keylog_cb(const SSL *ssl, const char *line) {
  hconn_t *c = SSL_get_ex_data(ssl, 0);
  if (c != NULL && c->keylog) hconn_emit(c, EV_KEYLOG, 0, 0, 0, 0, line, strlen(line));
}

static int new_session_cb(SSL *ssl, SSL_SESSION *session) {
  hconn_t *c = SSL_get_ex_data(ssl, 0);
  int len = i2d_SSL_SESSION(session, NULL);
  if (c == NULL || len <= 0) return 0;
  unsigned char *der = malloc((size_t)len);
  if (der == NULL) return 0;
  unsigned char *p = der;
  i2d_SSL_SESSION(session, &p);
  hconn_emit(c, EV_SESSION, 0, 0, 0, 0, der, (size_t)len);
  free(der);
  return 0;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const unsigned char h2[] = {2, 'h', '2'};
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, h2, sizeof h2, in, inlen) != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int ticket_gen_cb(SSL *ssl, void *arg) {
  (void)ssl;
  (void)arg;
  return 1;
}

/* A ticket that decrypts is used without issuing a new one (OpenSSL otherwise sends a fresh ticket after every resumed
 * handshake, which the client parses and hands to JavaScript: a few percent of a resumed connection's CPU). Node's TLS
 * servers behave the same, and the client reuses its newest ticket until the server's 300 s lifetime ends it, after
 * which a full handshake brings a new one (runtime/hbone/README.md, Session resumption). */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *session, const unsigned char *keyname, size_t keyname_len, SSL_TICKET_STATUS status, void *arg) {
  (void)ssl;
  (void)session;
  (void)keyname;
  (void)keyname_len;
  (void)arg;
  if (status == SSL_TICKET_SUCCESS || status == SSL_TICKET_SUCCESS_RENEW) return SSL_TICKET_RETURN_USE;
  if (status == SSL_TICKET_FATAL_ERR_MALLOC || status == SSL_TICKET_FATAL_ERR_OTHER) return SSL_TICKET_RETURN_ABORT;
  return SSL_TICKET_RETURN_IGNORE_RENEW;
}

/* The peer is checked by JavaScript after the handshake (SPIFFE identity, trust domain), as Node's rejectUnauthorized:
 * false servers do; the chain's verification result is kept for it. */
static int verify_cb(int ok, X509_STORE_CTX *store) {
  (void)ok;
  (void)store;
  return 1;
}

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  SSL_CTX_free(data);
}

static size_t arg_string(napi_env env, napi_value v, char **out) {
  size_t len = 0;
  *out = NULL;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return 0;
  *out = malloc(len + 1);
  if (*out == NULL) return 0;
  napi_get_value_string_utf8(env, v, *out, len + 1, &len);
  return len;
}

/* hboneContext(certChainPem, keyPem, rootsPem, server) -> SSL_CTX handle: TLS 1.3 only, HBONE's suites, ALPN h2. */
static napi_value hbone_context(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool server = false;
  char *cert = NULL, *key = NULL, *roots = NULL;
  if (argc < 4 || napi_get_value_bool(env, argv[3], &server) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "hboneContext(certPem, keyPem, rootsPem, server)");
    return NULL;
  }
  size_t cert_len = arg_string(env, argv[0], &cert), key_len = arg_string(env, argv[1], &key), roots_len = arg_string(env, argv[2], &roots);
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  const char *problem = NULL;
  if (ctx == NULL) problem = "SSL_CTX_new";
  else {
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* As Node's TLS sets it: a peer's FIN without close_notify is an orderly end (HTTP/2 frames its own ends, so a
     * truncation cannot pass unnoticed); a process that exits after draining closes its sockets this way. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#ifdef SSL_OP_NO_TX_CERTIFICATE_COMPRESSION
    /* No RFC 8879 certificate compression either way: OpenSSL 3.2+ offers it by default and then Brotli-compresses
     * the client's certificate at quality 11 on every handshake, a quarter of a new connection's CPU here, to save a
     * few hundred bytes of a P-256 chain. rustls (ztunnel) compresses only with optional features, HAProxy's OpenSSL
     * 3.0 never; a peer that offers it gets uncompressed certificates, as the extension allows. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TX_CERTIFICATE_COMPRESSION | SSL_OP_NO_RX_CERTIFICATE_COMPRESSION);
#endif
    if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384") != 1) problem = "ciphersuites";
    BIO *b = BIO_new_mem_buf(cert, (int)cert_len);
    X509 *x = b == NULL ? NULL : PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) problem = "certificate";
    X509_free(x);
    while (b != NULL && problem == NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
        X509_free(x);
        problem = "certificate chain";
      }
    }
    BIO_free(b);
    b = BIO_new_mem_buf(key, (int)key_len);
    EVP_PKEY *pk = b == NULL ? NULL : PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    if (problem == NULL && (pk == NULL || SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1)) problem = "private key";
    EVP_PKEY_free(pk);
    BIO_free(b);
    b = BIO_new_mem_buf(roots, (int)roots_len);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int nroots = 0;
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      X509_STORE_add_cert(store, x);
      X509_free(x);
      nroots++;
    }
    BIO_free(b);
    if (problem == NULL && nroots == 0) problem = "roots";
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);
    SSL_CTX_set_timeout(ctx, 300);
    /* Read ahead: one read() takes whatever the socket holds instead of a record's 5-byte header and then its body, so
     * a handshake flight of several records (and each TLS record of a tunnel) costs one syscall, not two per record.
     * weft-tls.c reads until OpenSSL wants more, so nothing buffered is left behind. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (server) {
      static const unsigned char sid_ctx[] = "weft-hbone";
      SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
      SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
      /* One stateless ticket per full handshake, as Node's servers issue (the client reuses it until a newer one). */
      SSL_CTX_set_num_tickets(ctx, 1);
      SSL_CTX_set_session_ticket_cb(ctx, ticket_gen_cb, ticket_dec_cb, NULL);
    } else {
      static const unsigned char alpn[] = {2, 'h', '2'};
      SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    }
  }
  free(cert);
  free(key);
  free(roots);
  ERR_clear_error();
  if (problem != NULL) {
    SSL_CTX_free(ctx);
    char msg[128];
    snprintf(msg, sizeof msg, "hboneContext: bad %s", problem);
    napi_throw_error(env, "WEFT_ERR_TLS", msg);
    return NULL;
  }
  napi_value out;
  napi_create_external(env, ctx, ctx_finalize, NULL, &out);
  return out;
}

void weft_tls_context_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"hboneContext", NULL, hbone_context, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
