/* The native HBONE connection shared by weft-tls.c (OpenSSL over the socket, events to JavaScript) and weft-h2.c
 * (the HTTP/2 frame splitter and the native streams' DATA and flow control). */
#ifndef WEFT_HBONE_H
#define WEFT_HBONE_H

#include <node_api.h>
#include <uv.h>
#include <stdint.h>
#include <stddef.h>
#include <openssl/ssl.h>

/* Events to JavaScript, one call each: onEvent(kind, streamId, x, y, z, buffer). */
enum {
  EV_HANDSHAKE = 1, /* the handshake finished; JavaScript reads hboneInfo() and checks the peer */
  EV_DATA = 2,      /* HTTP/2 bytes for node:http2 (every frame but native streams' DATA and WINDOW_UPDATE) */
  EV_DRAIN = 3,     /* JavaScript's queued bytes went below the high-water mark */
  EV_SESSION = 4,   /* a TLS session (i2d_SSL_SESSION) the client may resume */
  EV_KEYLOG = 5,    /* one NSS key log line */
  EV_STREAM_END = 6,  /* a native stream's socket sent FIN and every byte before it is framed: send END_STREAM */
  EV_STREAM_DONE = 7, /* a native stream ended: x bytes peer->socket, y socket->peer, z 0 or a negative errno */
  EV_CLOSED = 8       /* the connection ended: z 0 (orderly) or an error, buffer the reason */
};

/* A chunk of bytes queued for a native stream's socket (the peer's DATA the socket did not take yet). */
typedef struct hchunk {
  struct hchunk *next;
  size_t len, off;
  char data[];
} hchunk_t;

typedef struct hevent {
  struct hevent *next;
  int kind;
  uint32_t sid;
  double x, y, z;
  size_t len;
  char data[];
} hevent_t;

/* A growable byte queue: bytes [off, len) are unconsumed. */
typedef struct {
  char *buf;
  size_t off, len, cap;
} hbytes_t;

struct hconn;

typedef struct hstream {
  struct hconn *c;
  struct hstream *next;
  uint32_t id;
  int fd;
  uv_poll_t poll;
  int events;
  int64_t send_window;
  /* Peer DATA bytes (padding included) received and not yet returned as WINDOW_UPDATE. */
  int64_t recv_unacked;
  /* Of those, bytes consumed (written to the socket, or padding) and due in the next WINDOW_UPDATE. */
  int64_t credit;
  hchunk_t *head, *tail;
  size_t pending;
  unsigned char armed;      /* the response HEADERS went out before any native DATA may */
  unsigned char remote_end; /* END_STREAM received: SHUT_WR the socket once pending is written */
  unsigned char fd_shut, fd_eof, done, polling;
  /* draining: weft ended the stream in order (hboneStreamDrain); the socket is read only to drop late bytes until
   * sock_eof, its peer's FIN, so its close is never a reset. */
  unsigned char draining, sock_eof;
  uint64_t bytes_in, bytes_out;
  uint64_t last_activity; /* loop time of the last byte either way (the tunnel's idle timeout) */
  int err;
} hstream_t;

typedef struct hconn {
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uv_loop_t *loop;
  int fd;
  uv_poll_t poll;
  uv_idle_t check; /* delivers events raised by JavaScript calls; an idle handle keeps the loop from blocking before it runs */
  int events;
  int open_handles;
  int refs;
  SSL *ssl;
  unsigned char server, keylog, handshaken, closed, finishing, ending, eof_seen, in_callback, check_active;
  hevent_t *ev_head, *ev_tail;

  /* Inbound (TLS plaintext from the peer): the frame splitter's state. */
  size_t preface_left;
  unsigned char hdr[9];
  size_t hdr_have;
  int mode;
  uint8_t ftype, fflags;
  uint32_t fsid, flen, fleft;
  hstream_t *fstream;
  int pad_state; /* 0: no padding, 1: pad length byte next, 2: data, then padding */
  uint32_t pad_left;
  hbytes_t inspect; /* payload of SETTINGS / WINDOW_UPDATE / RST_STREAM being collected */
  hbytes_t tojs;    /* bytes for node:http2, handed over at the end of the callback */

  /* Outbound: JavaScript's HTTP/2 bytes, parsed for frame boundaries and connection-window accounting. */
  hbytes_t jsq;
  size_t js_parsed;  /* start of the next frame header in jsq (absolute: offsets shift on compaction) */
  size_t js_cleared; /* bytes that may be sent (window accounted) */
  int js_blocked_drain;
  hbytes_t cq; /* the addon's own WINDOW_UPDATE frames */
  int wlock;   /* 1 jsq, 2 cq, 3 frame: the queue whose SSL_write must be retried first */
  char *frame; /* a DATA frame SSL_write took only part of */
  size_t frame_len, frame_off;

  /* HTTP/2 state the addon needs (RFC 9113 §6.9). */
  int64_t conn_send_window;
  int64_t js_conn_view; /* what node:http2 believes the connection send window is (never above conn_send_window at an update) */
  int64_t peer_initial_window;
  uint32_t peer_max_frame;
  uint32_t local_max_frame;
  int64_t local_window;
  int64_t conn_credit;
  hstream_t *streams;
  int nstreams;
  /* The thread's open connections, closed together when its environment goes away (a worker thread exiting). */
  struct hconn *prev, *next;
} hconn_t;

/* weft-tls.c */
void hconn_emit(hconn_t *c, int kind, uint32_t sid, double x, double y, double z, const void *data, size_t len);
void hconn_fail(hconn_t *c, int code, const char *reason);
void hconn_flush(hconn_t *c);
void hconn_deliver(hconn_t *c);
void hconn_release(hconn_t *c);
int hbytes_append(hbytes_t *b, const void *data, size_t len);
void hbytes_consume(hbytes_t *b, size_t n);

/* weft-h2.c */
int h2_inbound(hconn_t *c, const unsigned char *data, size_t len);
void h2_js_parse(hconn_t *c);
int h2_at_boundary(hconn_t *c);
void h2_streams_interest(hconn_t *c);
int h2_stream_open(hconn_t *c, uint32_t sid, int fd, int armed);
void h2_stream_abort(hconn_t *c, uint32_t sid, int rst);
void h2_close_all(hconn_t *c, int err);
int h2_stream_exists(hconn_t *c, uint32_t sid);
/* An orderly end from weft's side (the drain deadline): nothing more is framed from the socket (END_STREAM follows the
 * DATA already framed), FIN to the socket after the peer's queued DATA, the socket's late bytes dropped until its FIN. */
void h2_stream_drain(hconn_t *c, uint32_t sid);
/* Milliseconds of loop time since the stream last moved a byte; -1 once it ended. */
double h2_stream_idle_ms(hconn_t *c, uint32_t sid);
void weft_h2_register(napi_env env, napi_value exports);
void weft_tls_register(napi_env env, napi_value exports);

/* weft-tls-context.c */
void weft_tls_context_register(napi_env env, napi_value exports);

#endif
