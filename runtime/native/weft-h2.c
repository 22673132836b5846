/* The HTTP/2 frame splitter of a native HBONE connection (RFC 9113): inbound DATA and WINDOW_UPDATE of streams
 * JavaScript marked native go between the TLS connection and the stream's plaintext socket here; every other frame
 * passes to node:http2 unchanged. Outbound, the addon's DATA frames (as large as the peer's SETTINGS_MAX_FRAME_SIZE
 * allows) go only at frame boundaries of node:http2's output, within the stream's and the connection's send windows,
 * and node:http2's own DATA is held while the connection window (shared, tracked here exactly) cannot take it. */
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

enum { F_DATA = 0, F_HEADERS = 1, F_RST_STREAM = 3, F_SETTINGS = 4, F_WINDOW_UPDATE = 8 };
enum { FL_END_STREAM = 0x1, FL_ACK = 0x1, FL_PADDED = 0x8 };
enum { M_HDR = 0, M_PASS, M_INSPECT, M_NATIVE };
/* Largest DATA payload the addon writes per frame (bounded further by the peer's SETTINGS_MAX_FRAME_SIZE). */
#define FRAME_CAP (256 * 1024)
#define FRAMES_PER_EVENT 8
#define MAX_WINDOW 0x7fffffffLL
/* Connection-level credit is returned in steps of this much (the stream's in quarters of its window). */
#define CONN_CREDIT_STEP (1024 * 1024)

static __thread unsigned char *frame_scratch;

static void put_header(unsigned char *h, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid) {
  h[0] = (unsigned char)(len >> 16);
  h[1] = (unsigned char)(len >> 8);
  h[2] = (unsigned char)len;
  h[3] = type;
  h[4] = flags;
  h[5] = (unsigned char)(sid >> 24) & 0x7f;
  h[6] = (unsigned char)(sid >> 16);
  h[7] = (unsigned char)(sid >> 8);
  h[8] = (unsigned char)sid;
}

static uint32_t get32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static hstream_t *find(hconn_t *c, uint32_t sid) {
  for (hstream_t *s = c->streams; s != NULL; s = s->next)
    if (s->id == sid) return s;
  return NULL;
}

static void window_update(hconn_t *c, uint32_t sid, uint32_t inc) {
  unsigned char f[13];
  put_header(f, 4, F_WINDOW_UPDATE, 0, sid);
  f[9] = (unsigned char)(inc >> 24) & 0x7f;
  f[10] = (unsigned char)(inc >> 16);
  f[11] = (unsigned char)(inc >> 8);
  f[12] = (unsigned char)inc;
  if (hbytes_append(&c->cq, f, sizeof f) != 0) hconn_fail(c, -ENOMEM, "out of memory");
}

/* Bytes of the peer's DATA that are consumed (written to the socket, or padding, or dropped) earn their window back. */
static void credit(hconn_t *c, hstream_t *s, size_t n) {
  if (s != NULL && !s->done) {
    s->credit += (int64_t)n;
    int64_t step = c->local_window / 4 > 16384 ? c->local_window / 4 : 16384;
    if (s->credit >= step) {
      window_update(c, s->id, (uint32_t)s->credit);
      s->recv_unacked -= s->credit;
      s->credit = 0;
    }
  }
}

static void conn_credit(hconn_t *c, size_t n) {
  c->conn_credit += (int64_t)n;
  if (c->conn_credit >= CONN_CREDIT_STEP) {
    window_update(c, 0, (uint32_t)c->conn_credit);
    c->conn_credit = 0;
  }
}

static void stream_closed(uv_handle_t *handle) {
  hstream_t *s = handle->data;
  hconn_t *c = s->c;
  for (hchunk_t *k = s->head; k != NULL;) {
    hchunk_t *n = k->next;
    free(k);
    k = n;
  }
  free(s);
  /* The stream's poll handle held a reference on the connection. */
  hconn_release(c);
}

/* Removes the stream: its socket is closed (with RST when `rst`), JavaScript hears STREAM_DONE once. */
static void stream_finish(hconn_t *c, hstream_t *s, int err, int rst) {
  if (s->done) return;
  s->done = 1;
  for (hstream_t **pp = &c->streams; *pp != NULL; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  c->nstreams--;
  if (c->fstream == s) c->fstream = NULL;
  if (rst) {
    struct linger l = {1, 0};
    setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  uv_close((uv_handle_t *)&s->poll, stream_closed);
  close(s->fd);
  hconn_emit(c, EV_STREAM_DONE, s->id, (double)s->bytes_in, (double)s->bytes_out, err, NULL, 0);
}

static void check_done(hconn_t *c, hstream_t *s) {
  if (s->fd_shut && s->fd_eof && (!s->draining || s->sock_eof)) stream_finish(c, s, 0, 0);
}

static void remote_end(hconn_t *c, hstream_t *s) {
  s->remote_end = 1;
  if (s->pending > 0 || s->fd_shut) return;
  s->fd_shut = 1;
  shutdown(s->fd, SHUT_WR);
  check_done(c, s);
}

/* Peer DATA for a native stream: to the socket now, or queued (at most the stream's receive window). */
static void to_stream(hconn_t *c, hstream_t *s, const unsigned char *data, size_t n) {
  conn_credit(c, n);
  if (s == NULL || s->done || s->remote_end) return;
  size_t w = 0;
  if (s->pending == 0) {
    while (w < n) {
      ssize_t r = send(s->fd, data + w, n - w, MSG_NOSIGNAL);
      if (r >= 0) w += (size_t)r;
      else if (errno == EINTR) continue;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      else {
        stream_finish(c, s, -errno, 1);
        return;
      }
    }
  }
  s->bytes_in += w;
  s->last_activity = uv_now(c->loop);
  credit(c, s, w);
  if (w == n) return;
  hchunk_t *k = malloc(sizeof *k + (n - w));
  if (k == NULL) {
    stream_finish(c, s, -ENOMEM, 1);
    return;
  }
  k->next = NULL;
  k->len = n - w;
  k->off = 0;
  memcpy(k->data, data + w, n - w);
  if (s->tail != NULL) s->tail->next = k;
  else s->head = k;
  s->tail = k;
  s->pending += n - w;
}

static void flush_stream(hconn_t *c, hstream_t *s) {
  while (s->head != NULL && !s->done) {
    hchunk_t *k = s->head;
    ssize_t r = send(s->fd, k->data + k->off, k->len - k->off, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) stream_finish(c, s, -errno, 1);
      return;
    }
    k->off += (size_t)r;
    s->pending -= (size_t)r;
    s->bytes_in += (uint64_t)r;
    s->last_activity = uv_now(c->loop);
    credit(c, s, (size_t)r);
    if (k->off < k->len) return;
    s->head = k->next;
    if (s->head == NULL) s->tail = NULL;
    free(k);
  }
  if (!s->done && s->pending == 0 && s->remote_end) remote_end(c, s);
}

static int malformed(hconn_t *c, const char *why) {
  hconn_fail(c, -EPROTO, why);
  return -1;
}

static void pass(hconn_t *c, const void *data, size_t n) {
  if (hbytes_append(&c->tojs, data, n) != 0) hconn_fail(c, -ENOMEM, "out of memory");
}

static int end_inspect(hconn_t *c) {
  const unsigned char *p = (const unsigned char *)c->inspect.buf;
  uint32_t n = c->flen;
  hstream_t *s = c->fsid != 0 ? find(c, c->fsid) : NULL;
  c->mode = M_HDR;
  if (c->ftype == F_SETTINGS && n % 6 == 0) {
    for (uint32_t i = 0; i < n; i += 6) {
      unsigned id = ((unsigned)p[i] << 8) | p[i + 1];
      uint32_t v = get32(p + i + 2);
      if (id == 4 && v <= MAX_WINDOW) {
        /* RFC 9113 §6.9.2: a new initial window changes every open stream's send window by the difference. */
        int64_t delta = (int64_t)v - c->peer_initial_window;
        for (hstream_t *t = c->streams; t != NULL; t = t->next) t->send_window += delta;
        c->peer_initial_window = v;
      } else if (id == 5 && v >= 16384 && v <= 16777215) c->peer_max_frame = v;
    }
  } else if (c->ftype == F_WINDOW_UPDATE && n == 4 && (get32(p) & 0x7fffffff) != 0) {
    uint32_t inc = get32(p) & 0x7fffffff;
    if (c->fsid == 0) {
      c->conn_send_window += inc;
      if (c->conn_send_window > MAX_WINDOW) return malformed(c, "peer overflowed the connection window (FLOW_CONTROL_ERROR)");
      /* node:http2 is told only what keeps its view at or below the true window (its own DATA is also held by
       * h2_js_parse when it asks for more than there is). */
      int64_t fwd = c->conn_send_window - c->js_conn_view;
      if (fwd > 0) {
        unsigned char f[13];
        put_header(f, 4, F_WINDOW_UPDATE, 0, 0);
        f[9] = (unsigned char)(fwd >> 24) & 0x7f;
        f[10] = (unsigned char)(fwd >> 16);
        f[11] = (unsigned char)(fwd >> 8);
        f[12] = (unsigned char)fwd;
        c->js_conn_view += fwd;
        pass(c, f, sizeof f);
      }
      h2_js_parse(c);
      return 0;
    }
    if (s != NULL) {
      s->send_window += inc;
      if (s->send_window > MAX_WINDOW) return malformed(c, "peer overflowed a stream window (FLOW_CONTROL_ERROR)");
      return 0;
    }
  } else if (c->ftype == F_RST_STREAM && s != NULL) {
    pass(c, c->hdr, 9);
    pass(c, p, n);
    stream_finish(c, s, -ECONNABORTED, 1);
    return 0;
  }
  pass(c, c->hdr, 9);
  pass(c, p, n);
  return 0;
}

static int begin_frame(hconn_t *c) {
  const unsigned char *h = c->hdr;
  c->flen = ((uint32_t)h[0] << 16) | ((uint32_t)h[1] << 8) | h[2];
  c->ftype = h[3];
  c->fflags = h[4];
  c->fsid = get32(h + 5) & 0x7fffffff;
  c->fleft = c->flen;
  c->hdr_have = 0;
  if (c->flen > c->local_max_frame && c->flen > 16384) return malformed(c, "frame larger than SETTINGS_MAX_FRAME_SIZE (FRAME_SIZE_ERROR)");
  hstream_t *s = c->fsid != 0 ? find(c, c->fsid) : NULL;
  if (c->ftype == F_DATA && s != NULL) {
    c->mode = M_NATIVE;
    c->fstream = s;
    s->recv_unacked += c->flen;
    int64_t limit = c->local_window > 65535 ? c->local_window : 65535;
    if (s->recv_unacked > limit) return malformed(c, "peer sent past the stream window (FLOW_CONTROL_ERROR)");
    c->pad_state = (c->fflags & FL_PADDED) ? 1 : 2;
    c->pad_left = 0;
    if (c->pad_state == 1 && c->flen == 0) return malformed(c, "padded DATA frame without a pad length");
  } else if (c->ftype == F_WINDOW_UPDATE || (c->ftype == F_SETTINGS && !(c->fflags & FL_ACK)) || (c->ftype == F_RST_STREAM && s != NULL)) {
    if (c->flen > 16384) return malformed(c, "oversized control frame");
    c->mode = M_INSPECT;
    c->inspect.off = c->inspect.len = 0;
  } else {
    if (c->ftype == F_HEADERS && s != NULL && (c->fflags & FL_END_STREAM)) remote_end(c, s);
    pass(c, c->hdr, 9);
    c->mode = M_PASS;
  }
  return 0;
}

static void end_native_frame(hconn_t *c) {
  hstream_t *s = c->fstream;
  c->mode = M_HDR;
  c->fstream = NULL;
  if (c->fflags & FL_END_STREAM) {
    /* node:http2 sees the stream's end as an empty DATA frame: its stream state stays right, no window is used. */
    unsigned char f[9];
    put_header(f, 0, F_DATA, FL_END_STREAM, c->fsid);
    pass(c, f, sizeof f);
    if (s != NULL && !s->done) remote_end(c, s);
  }
}

int h2_inbound(hconn_t *c, const unsigned char *data, size_t len) {
  while (len > 0 && !c->closed) {
    if (c->preface_left > 0) {
      size_t n = len < c->preface_left ? len : c->preface_left;
      pass(c, data, n);
      c->preface_left -= n;
      data += n;
      len -= n;
      continue;
    }
    if (c->mode == M_HDR) {
      size_t n = 9 - c->hdr_have < len ? 9 - c->hdr_have : len;
      memcpy(c->hdr + c->hdr_have, data, n);
      c->hdr_have += n;
      data += n;
      len -= n;
      if (c->hdr_have < 9) break;
      if (begin_frame(c) < 0) return -1;
    } else {
      size_t n = c->fleft < len ? c->fleft : len;
      if (c->mode == M_PASS) pass(c, data, n);
      else if (c->mode == M_INSPECT) {
        if (hbytes_append(&c->inspect, data, n) != 0) return malformed(c, "out of memory");
      } else {
        /* Native DATA: [pad length] data [padding]; padding and the pad length byte are consumed at once. */
        size_t used = 0;
        while (used < n) {
          if (c->pad_state == 1) {
            c->pad_left = data[used];
            used++;
            conn_credit(c, 1);
            credit(c, c->fstream, 1);
            if (c->pad_left > c->fleft - used) return malformed(c, "DATA padding longer than the frame (PROTOCOL_ERROR)");
            c->pad_state = 2;
          } else if (c->pad_state == 2) {
            size_t room = (c->fleft - used) - c->pad_left;
            size_t m = n - used < room ? n - used : room;
            to_stream(c, c->fstream, data + used, m);
            used += m;
            if (c->closed) return -1;
            if (m == room) c->pad_state = 3;
          } else {
            size_t m = n - used;
            conn_credit(c, m);
            credit(c, c->fstream, m);
            used += m;
          }
        }
      }
      c->fleft -= (uint32_t)n;
      data += n;
      len -= n;
    }
    if (c->mode != M_HDR && c->fleft == 0) {
      if (c->mode == M_PASS) c->mode = M_HDR;
      else if (c->mode == M_INSPECT) {
        if (end_inspect(c) < 0) return -1;
      } else end_native_frame(c);
    }
  }
  return c->closed ? -1 : 0;
}

/* Walks node:http2's queued output frame by frame: its DATA takes from the connection window (held back while the
 * window cannot take a frame), and a stream's first HEADERS arms its native DATA. */
void h2_js_parse(hconn_t *c) {
  while (c->js_parsed + 9 <= c->jsq.len) {
    const unsigned char *h = (const unsigned char *)c->jsq.buf + c->js_parsed;
    uint32_t len = ((uint32_t)h[0] << 16) | ((uint32_t)h[1] << 8) | h[2];
    uint32_t sid = get32(h + 5) & 0x7fffffff;
    if (h[3] == F_DATA && len > 0) {
      if ((int64_t)len > c->conn_send_window) break;
      c->conn_send_window -= len;
      c->js_conn_view -= len;
    } else if (h[3] == F_HEADERS) {
      hstream_t *s = find(c, sid);
      if (s != NULL) s->armed = 1;
    }
    c->js_parsed += 9 + len;
  }
}

int h2_at_boundary(hconn_t *c) {
  return c->jsq.off == c->jsq.len && c->js_parsed == c->jsq.len && c->wlock == 0 && c->frame == NULL;
}

static int can_send(hconn_t *c, hstream_t *s) {
  return !c->closed && c->handshaken && !c->ending && s->armed && !s->fd_eof && !s->done && s->send_window > 0 && c->conn_send_window > 0 && h2_at_boundary(c) && c->cq.off == c->cq.len;
}

static void on_stream_poll(uv_poll_t *handle, int status, int events);

static void stream_interest(hconn_t *c, hstream_t *s) {
  if (s->done) return;
  int ev = 0;
  if (can_send(c, s) || (s->draining && !s->sock_eof)) ev |= UV_READABLE;
  if (s->pending > 0) ev |= UV_WRITABLE;
  if (ev == s->events) return;
  s->events = ev;
  if (ev == 0) uv_poll_stop(&s->poll);
  else uv_poll_start(&s->poll, ev, on_stream_poll);
}

void h2_streams_interest(hconn_t *c) {
  for (hstream_t *s = c->streams; s != NULL; s = s->next) stream_interest(c, s);
}

/* The socket's bytes become DATA frames, each written to TLS whole (a part OpenSSL did not take waits in c->frame). */
static void stream_read(hconn_t *c, hstream_t *s) {
  for (int k = 0; k < FRAMES_PER_EVENT && can_send(c, s); k++) {
    int64_t max = c->peer_max_frame < FRAME_CAP ? c->peer_max_frame : FRAME_CAP;
    if (s->send_window < max) max = s->send_window;
    if (c->conn_send_window < max) max = c->conn_send_window;
    ssize_t n = recv(s->fd, frame_scratch + 9, (size_t)max, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) stream_finish(c, s, -errno, 1);
      return;
    }
    if (n == 0) {
      /* Every byte before the FIN is framed already; node:http2's END_STREAM follows them. */
      s->fd_eof = 1;
      s->sock_eof = 1;
      hconn_emit(c, EV_STREAM_END, s->id, 0, 0, 0, NULL, 0);
      check_done(c, s);
      return;
    }
    put_header(frame_scratch, (uint32_t)n, F_DATA, 0, s->id);
    s->send_window -= n;
    c->conn_send_window -= n;
    s->bytes_out += (uint64_t)n;
    s->last_activity = uv_now(c->loop);
    size_t total = (size_t)n + 9, off = 0;
    while (off < total) {
      ERR_clear_error();
      int r = SSL_write(c->ssl, frame_scratch + off, (int)(total - off));
      if (r > 0) {
        off += (size_t)r;
        continue;
      }
      int err = SSL_get_error(c->ssl, r);
      if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) {
        hconn_fail(c, -EPROTO, "TLS write failed");
        return;
      }
      c->frame = malloc(total - off);
      if (c->frame == NULL) {
        hconn_fail(c, -ENOMEM, "out of memory");
        return;
      }
      memcpy(c->frame, frame_scratch + off, total - off);
      c->frame_len = total - off;
      c->frame_off = 0;
      c->wlock = 3;
      return;
    }
  }
}

/* A draining stream's socket: what its peer still sends is dropped, until its FIN. */
static void stream_discard(hconn_t *c, hstream_t *s) {
  if (frame_scratch == NULL) return;
  for (int k = 0; k < FRAMES_PER_EVENT && !s->done; k++) {
    ssize_t n = recv(s->fd, frame_scratch, FRAME_CAP, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) stream_finish(c, s, -errno, 1);
      return;
    }
    if (n == 0) {
      s->sock_eof = 1;
      check_done(c, s);
      return;
    }
  }
}

static void on_stream_poll(uv_poll_t *handle, int status, int events) {
  hstream_t *s = handle->data;
  hconn_t *c = s->c;
  if (s->done || c->closed) return;
  c->in_callback = 1;
  c->refs++;
  if (status < 0) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    stream_finish(c, s, -err, 1);
  } else {
    if ((events & UV_WRITABLE) && s->pending > 0) flush_stream(c, s);
    if ((events & UV_READABLE) && !s->done) {
      if (s->draining) stream_discard(c, s);
      else stream_read(c, s);
    }
  }
  hconn_flush(c);
  c->in_callback = 0;
  hconn_deliver(c);
  hconn_release(c);
}

int h2_stream_open(hconn_t *c, uint32_t sid, int fd, int armed) {
  if (frame_scratch == NULL) frame_scratch = malloc(FRAME_CAP + 9);
  hstream_t *s = calloc(1, sizeof *s);
  if (s == NULL || frame_scratch == NULL) {
    free(s);
    return -ENOMEM;
  }
  s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (s->fd < 0) {
    int err = errno;
    free(s);
    return -err;
  }
  int rc = uv_poll_init(c->loop, &s->poll, s->fd);
  if (rc != 0) {
    close(s->fd);
    free(s);
    return rc;
  }
  s->c = c;
  s->id = sid;
  s->poll.data = s;
  s->armed = (unsigned char)armed;
  s->last_activity = uv_now(c->loop);
  /* No DATA went out on the stream before it turned native (JavaScript checks), so its window is the initial one. */
  s->send_window = c->peer_initial_window;
  s->next = c->streams;
  c->streams = s;
  c->nstreams++;
  c->refs++;
  stream_interest(c, s);
  return 0;
}

void h2_stream_abort(hconn_t *c, uint32_t sid, int rst) {
  hstream_t *s = find(c, sid);
  if (s != NULL) stream_finish(c, s, rst ? -ECONNABORTED : -ECANCELED, 1);
}

void h2_close_all(hconn_t *c, int err) {
  (void)err;
  /* The tunnel side failed: each workload socket is reset, and JavaScript hears ECONNABORTED (the tunnel's side). */
  while (c->streams != NULL) stream_finish(c, c->streams, -ECONNABORTED, 1);
}

int h2_stream_exists(hconn_t *c, uint32_t sid) {
  return find(c, sid) != NULL;
}

void h2_stream_drain(hconn_t *c, uint32_t sid) {
  hstream_t *s = find(c, sid);
  if (s == NULL || s->done) return;
  if (!s->fd_eof) {
    s->fd_eof = 1;
    s->draining = 1;
    hconn_emit(c, EV_STREAM_END, s->id, 0, 0, 0, NULL, 0);
  }
  remote_end(c, s);
  if (!s->done) stream_interest(c, s);
}

double h2_stream_idle_ms(hconn_t *c, uint32_t sid) {
  hstream_t *s = find(c, sid);
  return s == NULL ? -1 : (double)(uv_now(c->loop) - s->last_activity);
}
