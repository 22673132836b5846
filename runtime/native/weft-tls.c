/* The native HBONE connection: OpenSSL (the one Node ships, linked from the node binary) drives TLS 1.3 over a
 * duplicate of the socket's fd, polled on Node's own libuv loop. HTTP/2 bytes for node:http2 and everything
 * JavaScript must decide (the peer's certificate, tickets, stream ends) reach it as events batched per loop
 * callback; the frame splitter (weft-h2.c) keeps native streams' DATA in C. Runtime/hbone/native-tls-socket.ts is
 * the JavaScript side. */
#define _GNU_SOURCE
#include "weft-hbone.h"
#include "weft-napi.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#define TLS_READ_CHUNK (64 * 1024)
/* JavaScript's queued bytes above this make hboneWrite answer "wait for drain" (as a socket's highWaterMark). */
#define JS_HIGH_WATER (256 * 1024)

static __thread unsigned char *read_scratch;
static __thread hconn_t *open_conns;
static __thread int cleanup_registered;

static void unlink_conn(hconn_t *c) {
  if (c->prev != NULL) c->prev->next = c->next;
  else if (open_conns == c) open_conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* The thread's environment is going away: Node closes its loop only once every handle on it has closed, so each open
 * connection's handles close here with no callback (the addon may be unloaded before libuv runs them; the memory is
 * left to the process, as weft-copy.c does). Peers see the connections close. */
static void env_cleanup(void *arg) {
  (void)arg;
  while (open_conns != NULL) {
    hconn_t *c = open_conns;
    unlink_conn(c);
    if (c->closed) continue;
    c->closed = 1;
    c->callback = NULL;
    for (hstream_t *s = c->streams; s != NULL; s = s->next) {
      uv_close((uv_handle_t *)&s->poll, NULL);
      close(s->fd);
    }
    uv_close((uv_handle_t *)&c->poll, NULL);
    uv_close((uv_handle_t *)&c->check, NULL);
    close(c->fd);
  }
}

int hbytes_append(hbytes_t *b, const void *data, size_t len) {
  if (b->len + len > b->cap) {
    if (b->off > 0) {
      memmove(b->buf, b->buf + b->off, b->len - b->off);
      b->len -= b->off;
      b->off = 0;
    }
    if (b->len + len > b->cap) {
      size_t cap = b->cap == 0 ? 16 * 1024 : b->cap;
      while (cap < b->len + len) cap *= 2;
      char *n = realloc(b->buf, cap);
      if (n == NULL) return -1;
      b->buf = n;
      b->cap = cap;
    }
  }
  memcpy(b->buf + b->len, data, len);
  b->len += len;
  return 0;
}

void hbytes_consume(hbytes_t *b, size_t n) {
  b->off += n;
  if (b->off == b->len) b->off = b->len = 0;
}

static void hbytes_free(hbytes_t *b) {
  free(b->buf);
  b->buf = NULL;
  b->off = b->len = b->cap = 0;
}

static void on_poll(uv_poll_t *handle, int status, int events);
void hconn_deliver(hconn_t *c);
/* The SSL object and the buffers (about 120 KiB a connection): once the connection is closed nothing reads them again
 * (every call from JavaScript checks `closed` first), so they go when the last loop handle has closed rather than when
 * JavaScript's handle is collected. V8 does not see this memory, so that collection could be far off: a worker
 * thread's HBONE server, whose JavaScript heap grows slowly, piled up a gigabyte of closed connections in 20 s of
 * handshakes, each new connection on fresh pages (test/bench/README.md, HBONE connection setup, third pass). */
/* SSL objects of HBONE connections alive in the process (all threads), for hboneHeld(). */
static long held_ssl;

static void hconn_shed(hconn_t *c) {
  if (c->ssl != NULL) {
    SSL_free(c->ssl);
    __atomic_sub_fetch(&held_ssl, 1, __ATOMIC_RELAXED);
  }
  c->ssl = NULL;
  hbytes_free(&c->inspect);
  hbytes_free(&c->tojs);
  hbytes_free(&c->jsq);
  hbytes_free(&c->cq);
  free(c->frame);
  c->frame = NULL;
}

void hconn_release(hconn_t *c) {
  if (--c->refs > 0) {
    /* Only JavaScript's handle is left (its loop handles and native streams are gone, no callback runs). */
    if (c->refs == 1 && c->closed && !c->in_callback) hconn_shed(c);
    return;
  }
  for (hevent_t *e = c->ev_head; e != NULL;) {
    hevent_t *n = e->next;
    free(e);
    e = n;
  }
  hconn_shed(c);
  free(c);
}

static void on_check(uv_idle_t *handle) {
  hconn_t *c = handle->data;
  uv_idle_stop(&c->check);
  c->check_active = 0;
  hconn_deliver(c);
}

static void push_event(hconn_t *c, int kind, uint32_t sid, double x, double y, double z, const void *data, size_t len) {
  hevent_t *e = malloc(sizeof *e + len);
  if (e == NULL) return;
  *e = (hevent_t){NULL, kind, sid, x, y, z, len};
  if (len > 0) memcpy(e->data, data, len);
  if (c->ev_tail != NULL) c->ev_tail->next = e;
  else c->ev_head = e;
  c->ev_tail = e;
  /* Outside a loop callback of this connection (a JavaScript call into the addon): delivered on the next check. */
  if (!c->in_callback && !c->check_active && !c->closed) {
    c->check_active = 1;
    uv_idle_start(&c->check, on_check);
  }
}

/* Bytes for node:http2 go first, so every event sees the frames that came before it. */
void hconn_emit(hconn_t *c, int kind, uint32_t sid, double x, double y, double z, const void *data, size_t len) {
  if (c->tojs.len > c->tojs.off) {
    size_t n = c->tojs.len - c->tojs.off;
    c->tojs.off = c->tojs.len = 0;
    push_event(c, EV_DATA, 0, 0, 0, 0, c->tojs.buf, n);
  }
  if (kind != EV_DATA) push_event(c, kind, sid, x, y, z, data, len);
}

void hconn_deliver(hconn_t *c) {
  if (c->in_callback || c->callback == NULL) return;
  hconn_emit(c, EV_DATA, 0, 0, 0, 0, NULL, 0);
  if (c->ev_head == NULL) return;
  napi_env env = c->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  c->in_callback = 1;
  c->refs++;
  napi_value cb, recv;
  napi_get_reference_value(env, c->callback, &cb);
  napi_get_global(env, &recv);
  while (c->ev_head != NULL && cb != NULL) {
    hevent_t *e = c->ev_head;
    c->ev_head = e->next;
    if (c->ev_head == NULL) c->ev_tail = NULL;
    napi_value argv[6];
    napi_create_int32(env, e->kind, &argv[0]);
    napi_create_uint32(env, e->sid, &argv[1]);
    napi_create_double(env, e->x, &argv[2]);
    napi_create_double(env, e->y, &argv[3]);
    napi_create_double(env, e->z, &argv[4]);
    if (e->len > 0) napi_create_buffer_copy(env, e->len, e->data, NULL, &argv[5]);
    else napi_get_undefined(env, &argv[5]);
    free(e);
    weft_make_callback(env, c->async, recv, cb, 6, argv);
    /* Events JavaScript caused while it ran are taken in this loop. */
    hconn_emit(c, EV_DATA, 0, 0, 0, 0, NULL, 0);
  }
  c->in_callback = 0;
  napi_close_handle_scope(env, scope);
  hconn_release(c);
}

static void on_handle_closed(uv_handle_t *handle) {
  hconn_t *c = handle->data;
  if (handle == (uv_handle_t *)&c->poll) {
    /* The last word: every event left, CLOSED among them, then JavaScript's callback is let go. */
    hconn_deliver(c);
    if (c->callback != NULL) {
      napi_delete_reference(c->env, c->callback);
      napi_async_destroy(c->env, c->async);
      c->callback = NULL;
    }
  }
  hconn_release(c);
}

static void set_interest(hconn_t *c) {
  if (c->closed) return;
  int ev = UV_READABLE;
  if (c->wlock != 0) ev |= UV_WRITABLE;
  if (ev == c->events) return;
  c->events = ev;
  uv_poll_start(&c->poll, ev, on_poll);
}

/* Ends the connection (an error, the peer's close, or JavaScript's): native streams are reset, the fd closed. */
void hconn_fail(hconn_t *c, int code, const char *reason) {
  if (c->closed) return;
  h2_close_all(c, code != 0 ? code : -ECONNRESET);
  c->closed = 1;
  unlink_conn(c);
  hconn_emit(c, EV_CLOSED, 0, 0, 0, code, reason, strlen(reason));
  if (c->check_active) uv_idle_stop(&c->check);
  uv_close((uv_handle_t *)&c->check, on_handle_closed);
  uv_close((uv_handle_t *)&c->poll, on_handle_closed);
  close(c->fd);
  c->fd = -1;
}

static void fail_ssl(hconn_t *c, int ret, const char *what) {
  int err = SSL_get_error(c->ssl, ret);
  unsigned long e = ERR_get_error();
  char msg[300];
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(msg, sizeof msg, "%s: %s", what, buf);
  } else if (err == SSL_ERROR_SYSCALL && errno != 0) snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  else snprintf(msg, sizeof msg, "%s: connection closed (SSL error %d)", what, err);
  ERR_clear_error();
  hconn_fail(c, -EPROTO, msg);
}

/* Writes what may go, in order: a part-written record's retry first, then JavaScript's frames, then (only at a frame
 * boundary of JavaScript's output) the addon's own WINDOW_UPDATEs; native DATA follows from the streams' polls. */
void hconn_flush(hconn_t *c) {
  while (!c->closed && c->handshaken) {
    const char *p;
    size_t n;
    int which;
    size_t js_sendable = (c->js_parsed < c->jsq.len ? c->js_parsed : c->jsq.len);
    js_sendable = js_sendable > c->jsq.off ? js_sendable - c->jsq.off : 0;
    if (c->wlock == 3 || (c->wlock == 0 && c->frame != NULL)) {
      which = 3;
      p = c->frame + c->frame_off;
      n = c->frame_len - c->frame_off;
    } else if (c->wlock == 1 || (c->wlock == 0 && js_sendable > 0)) {
      which = 1;
      p = c->jsq.buf + c->jsq.off;
      n = js_sendable;
    } else if (c->wlock == 2 || (c->wlock == 0 && h2_at_boundary(c) && c->cq.len > c->cq.off)) {
      which = 2;
      p = c->cq.buf + c->cq.off;
      n = c->cq.len - c->cq.off;
    } else break;
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, (int)n);
    if (r <= 0) {
      int err = SSL_get_error(c->ssl, r);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        c->wlock = which;
        break;
      }
      fail_ssl(c, r, "TLS write");
      return;
    }
    c->wlock = 0;
    if (which == 3) {
      c->frame_off += (size_t)r;
      if (c->frame_off == c->frame_len) {
        free(c->frame);
        c->frame = NULL;
      }
    } else if (which == 1) {
      c->jsq.off += (size_t)r;
      if (c->jsq.off == c->jsq.len) {
        c->js_parsed -= c->jsq.len;
        c->jsq.off = c->jsq.len = 0;
      }
    } else hbytes_consume(&c->cq, (size_t)r);
  }
  if (c->closed) return;
  if (c->js_blocked_drain && c->jsq.len - c->jsq.off < JS_HIGH_WATER) {
    c->js_blocked_drain = 0;
    hconn_emit(c, EV_DRAIN, 0, 0, 0, 0, NULL, 0);
  }
  if (c->ending && c->wlock == 0 && c->jsq.off == c->jsq.len && c->frame == NULL && c->ending == 1) {
    /* JavaScript ended its side: close_notify, then FIN; the connection ends when the peer closes too. */
    c->ending = 2;
    SSL_shutdown(c->ssl);
    shutdown(c->fd, SHUT_WR);
  }
  set_interest(c);
  h2_streams_interest(c);
}

static void tls_read(hconn_t *c) {
  while (!c->closed) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, read_scratch, TLS_READ_CHUNK);
    if (n > 0) {
      if (h2_inbound(c, read_scratch, (size_t)n) < 0) return;
      continue;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    if (err == SSL_ERROR_ZERO_RETURN) {
      hconn_fail(c, 0, "peer closed the TLS connection");
      return;
    }
    fail_ssl(c, n, "TLS read");
    return;
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  hconn_t *c = handle->data;
  if (c->closed) return;
  c->in_callback = 1;
  c->refs++;
  if (status < 0) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    hconn_fail(c, -err, strerror(err));
  } else if (!c->handshaken) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
      c->handshaken = 1;
      hconn_emit(c, EV_HANDSHAKE, 0, 0, 0, 0, NULL, 0);
      tls_read(c);
      hconn_flush(c);
    } else {
      int err = SSL_get_error(c->ssl, r);
      if (err == SSL_ERROR_WANT_READ) c->events = UV_READABLE;
      else if (err == SSL_ERROR_WANT_WRITE) c->events = UV_READABLE | UV_WRITABLE;
      else fail_ssl(c, r, "TLS handshake");
      if (!c->closed) uv_poll_start(&c->poll, c->events, on_poll);
    }
  } else {
    if (events & UV_WRITABLE) hconn_flush(c);
    if (events & UV_READABLE) tls_read(c);
    hconn_flush(c);
  }
  c->in_callback = 0;
  hconn_deliver(c);
  hconn_release(c);
}

static void conn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  hconn_release(data);
}

/* hboneOpen(ctx, fd, server, session|null, keylog, localWindow, localMaxFrame, onEvent) -> connection handle. The fd is
 * duplicated (JavaScript then destroys its socket); the handshake starts at once. */
static napi_value hbone_open(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  SSL_CTX *ctx = NULL;
  int32_t fd = -1;
  bool server = false, keylog = false;
  int64_t local_window = 0;
  uint32_t local_max_frame = 0;
  if (argc < 8 || napi_get_value_external(env, argv[0], (void **)&ctx) != napi_ok || napi_get_value_int32(env, argv[1], &fd) != napi_ok ||
      napi_get_value_bool(env, argv[2], &server) != napi_ok || napi_get_value_bool(env, argv[4], &keylog) != napi_ok ||
      napi_get_value_int64(env, argv[5], &local_window) != napi_ok || napi_get_value_uint32(env, argv[6], &local_max_frame) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "hboneOpen(ctx, fd, server, session, keylog, localWindow, localMaxFrame, onEvent)");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  napi_get_uv_event_loop(env, &loop);
  if (read_scratch == NULL) read_scratch = malloc(TLS_READ_CHUNK);
  hconn_t *c = calloc(1, sizeof *c);
  if (c == NULL || read_scratch == NULL || loop == NULL) {
    free(c);
    return throw_errno(env, "hboneOpen", ENOMEM);
  }
  c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (c->fd < 0) {
    int err = errno;
    free(c);
    return throw_errno(env, "hboneOpen: dup", err);
  }
  c->ssl = SSL_new(ctx);
  if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
    if (c->ssl != NULL) SSL_free(c->ssl);
    close(c->fd);
    free(c);
    napi_throw_error(env, "WEFT_ERR_TLS", "hboneOpen: SSL_new failed");
    return NULL;
  }
  __atomic_add_fetch(&held_ssl, 1, __ATOMIC_RELAXED);
  SSL_set_ex_data(c->ssl, 0, c);
  SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  napi_valuetype st = napi_undefined;
  napi_typeof(env, argv[3], &st);
  if (!server && st == napi_object) {
    void *der = NULL;
    size_t der_len = 0;
    if (napi_get_buffer_info(env, argv[3], &der, &der_len) == napi_ok && der_len > 0) {
      const unsigned char *p = der;
      SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, (long)der_len);
      if (sess != NULL) {
        SSL_set_session(c->ssl, sess);
        SSL_SESSION_free(sess);
      }
    }
  }
  ERR_clear_error();
  if (server) SSL_set_accept_state(c->ssl);
  else SSL_set_connect_state(c->ssl);
  c->env = env;
  c->loop = loop;
  c->server = server;
  c->keylog = keylog;
  c->refs = 3; /* JavaScript's external, the poll handle, the check handle */
  c->preface_left = server ? 24 : 0;
  c->js_parsed = server ? 0 : 24; /* the client's connection preface is no frame */
  c->conn_send_window = 65535;
  c->js_conn_view = 65535;
  c->peer_initial_window = 65535;
  c->peer_max_frame = 16384;
  c->local_window = local_window;
  c->local_max_frame = local_max_frame;
  napi_value name, external;
  napi_create_string_utf8(env, "weft.hbone", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[7], 1, &c->callback);
  napi_async_init(env, NULL, name, &c->async);
  uv_poll_init(loop, &c->poll, c->fd);
  uv_idle_init(loop, &c->check);
  c->poll.data = c;
  c->check.data = c;
  c->events = UV_READABLE | UV_WRITABLE;
  uv_poll_start(&c->poll, c->events, on_poll);
  napi_create_external(env, c, conn_finalize, NULL, &external);
  if (!cleanup_registered) {
    napi_add_env_cleanup_hook(env, env_cleanup, NULL);
    cleanup_registered = 1;
  }
  c->next = open_conns;
  if (open_conns != NULL) open_conns->prev = c;
  open_conns = c;
  return external;
}

static hconn_t *conn_arg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  void *data = NULL;
  napi_get_cb_info(env, info, argc, argv, NULL, NULL);
  if (*argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expects a handle from hboneOpen");
    return NULL;
  }
  return data;
}

/* hboneWrite(conn, bytes) -> 1 go on, 0 wait for the drain event, -1 closed. */
static napi_value hbone_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  hconn_t *c = conn_arg(env, info, &argc, argv);
  if (c == NULL) return NULL;
  void *data = NULL;
  size_t len = 0;
  int result = -1;
  if (!c->closed && !c->ending && napi_get_buffer_info(env, argv[1], &data, &len) == napi_ok) {
    /* Compaction shifts every jsq offset; the frame parser's position with them. */
    if (c->jsq.off > 0 && c->jsq.len + len > c->jsq.cap) {
      c->js_parsed -= c->jsq.off;
      memmove(c->jsq.buf, c->jsq.buf + c->jsq.off, c->jsq.len - c->jsq.off);
      c->jsq.len -= c->jsq.off;
      c->jsq.off = 0;
    }
    if (hbytes_append(&c->jsq, data, len) != 0) hconn_fail(c, -ENOMEM, "out of memory");
    else {
      h2_js_parse(c);
      hconn_flush(c);
      result = 1;
      if (!c->closed && c->jsq.len - c->jsq.off >= JS_HIGH_WATER) {
        c->js_blocked_drain = 1;
        result = 0;
      }
    }
  }
  napi_create_int32(env, result, &out);
  return out;
}

/* hboneEnd(conn): after the queued bytes, close_notify and FIN. */
static napi_value hbone_end(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  hconn_t *c = conn_arg(env, info, &argc, argv);
  if (c != NULL && !c->closed && !c->ending) {
    c->ending = 1;
    hconn_flush(c);
  }
  return NULL;
}

/* hboneClose(conn): ends the connection now (native streams are reset). */
static napi_value hbone_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  hconn_t *c = conn_arg(env, info, &argc, argv);
  if (c != NULL) hconn_fail(c, 0, "closed");
  return NULL;
}

/* hboneHeld() -> HBONE connections whose TLS state is still allocated, in every thread (tests: closed ones hold none). */
static napi_value hbone_held(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_int64(env, __atomic_load_n(&held_ssl, __ATOMIC_RELAXED), &out);
  return out;
}

/* hboneInfo(conn) -> { alpn, resumed, verifyError, peerCertificate (DER), cipher, version } after the handshake. */
static napi_value hbone_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  hconn_t *c = conn_arg(env, info, &argc, argv);
  if (c == NULL || c->closed || !c->handshaken) return NULL;
  napi_create_object(env, &out);
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
  if (alpn_len > 0) napi_create_string_utf8(env, (const char *)alpn, alpn_len, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, out, "alpn", v);
  napi_get_boolean(env, SSL_session_reused(c->ssl) == 1, &v);
  napi_set_named_property(env, out, "resumed", v);
  long vr = SSL_get_verify_result(c->ssl);
  if (vr == X509_V_OK) napi_get_null(env, &v);
  else napi_create_string_utf8(env, X509_verify_cert_error_string(vr), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "verifyError", v);
  napi_create_int32(env, (int32_t)vr, &v);
  napi_set_named_property(env, out, "verifyCode", v);
  X509 *peer = SSL_get1_peer_certificate(c->ssl);
  napi_get_null(env, &v);
  if (peer != NULL) {
    int len = i2d_X509(peer, NULL);
    void *dst = NULL;
    if (len > 0 && napi_create_buffer(env, (size_t)len, &dst, &v) == napi_ok) {
      unsigned char *p = dst;
      i2d_X509(peer, &p);
    }
    X509_free(peer);
  }
  napi_set_named_property(env, out, "peerCertificate", v);
  napi_create_string_utf8(env, SSL_get_cipher_name(c->ssl), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "cipher", v);
  napi_create_string_utf8(env, SSL_get_version(c->ssl), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "version", v);
  return out;
}

void weft_tls_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"hboneOpen", NULL, hbone_open, NULL, NULL, NULL, napi_default, NULL},
    {"hboneWrite", NULL, hbone_write, NULL, NULL, NULL, napi_default, NULL},
    {"hboneEnd", NULL, hbone_end, NULL, NULL, NULL, napi_default, NULL},
    {"hboneClose", NULL, hbone_close, NULL, NULL, NULL, napi_default, NULL},
    {"hboneInfo", NULL, hbone_info, NULL, NULL, NULL, napi_default, NULL},
    {"hboneHeld", NULL, hbone_held, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  weft_h2_register(env, exports);
  weft_tls_context_register(env, exports);
}
