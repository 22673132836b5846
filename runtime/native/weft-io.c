/* Batched socket I/O for the HTTP/1 path (runtime/l7/http1-native-transport.ts). The addon owns a duplicate of each
 * connection's fd, polled on Node's own libuv loop. Reads from every connection that is ready land in one arena, and
 * JavaScript hears about them in one call per loop iteration (a uv_check handle), not one callback per socket read.
 * Writes go straight to the kernel; what it does not take is copied and sent when the fd is writable. The fixed cost
 * Node pays per read callback and per write request is paid once per batch. Records are four int32s:
 * [connection id, kind, arena offset, length], where an error record's length is a negative errno.
 * The calls made per request (write, end, pause, resume) name their connection by [slot, id], two small integers,
 * not by its external: reading an external touches its heap object, a cache miss on nearly every call under load
 * (most of what those calls cost in user space, measured). The external stays the connection's lifetime (its
 * finalizer is the safety net); the id, never reused, tells a stale slot from the connection now in it. */
#define _GNU_SOURCE
#include <node_api.h>
#include "weft-napi.h"
#include "weft-io-parts.h"
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define ARENA_BYTES (256 * 1024)
/* A read needs this much arena room; with less, the batch is handed over first. */
#define READ_ROOM (32 * 1024)
#define MAX_RECORDS 4096
/* Room for the records that may arrive while JavaScript runs a batch (only failures of calls it makes). */
#define RECORD_HEADROOM 256
#define READS_PER_EVENT 8
/* Unsent bytes above this make a write answer "wait for drain" (Node's socket highWaterMark). */
#define HIGH_WATER (16 * 1024)

enum { REC_DATA = 1, REC_EOF = 2, REC_ERROR = 3, REC_DRAIN = 4, REC_SHUTDOWN = 5 };

typedef struct chunk {
  struct chunk *next;
  size_t len;
  size_t off;
  char data[];
} chunk_t;

typedef struct io_state io_state_t;

/* What a write or a read looks at comes first, in one cache line; the poll handle (over a hundred bytes libuv reads
 * itself) last. Under load a connection's struct is rarely still cached when its next call comes: one line is one miss. */
typedef struct io_conn {
  io_state_t *state;
  int32_t id;
  uint32_t slot;
  int fd;
  int events;
  unsigned char reading, eof, failed, want_drain, end_requested, shut, closed;
  chunk_t *head;
  chunk_t *tail;
  size_t queued;
  /* The state's list of open connections, closed together when the thread's environment goes away. */
  struct io_conn *prev, *next;
  /* One reference held by JavaScript's external, one by the poll handle until its close callback. */
  int refs;
  uv_poll_t poll;
} io_conn_t;
_Static_assert(offsetof(io_conn_t, prev) <= 64, "a connection's hot fields fit one cache line");

struct io_state {
  io_conn_t *conns;
  /* Open connections by slot; free slots are kept on a stack. */
  io_conn_t **slots;
  uint32_t *free_slots;
  uint32_t n_slots;
  uint32_t n_free;
  napi_env env;
  napi_ref callback;
  napi_ref arena_ref;
  napi_ref records_ref;
  napi_async_context async;
  uv_check_t check;
  unsigned char check_active;
  unsigned char in_flush;
  char *arena;
  int32_t *records;
  size_t arena_used;
  uint32_t count;
};

/* One state per thread: each worker thread has its own loop and its own JavaScript batch callback. */
static __thread io_state_t *thread_state;

static void on_poll(uv_poll_t *handle, int status, int events);
static void fail(io_conn_t *c, int err);

static void conn_release(io_conn_t *c) {
  if (--c->refs == 0) free(c);
}

static void free_queue(io_conn_t *c) {
  chunk_t *k = c->head;
  while (k != NULL) {
    chunk_t *next = k->next;
    free(k);
    k = next;
  }
  c->head = c->tail = NULL;
  c->queued = 0;
}

static void deliver(io_state_t *s, uint32_t n) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[1];
  napi_get_reference_value(env, s->callback, &cb);
  napi_get_global(env, &recv);
  napi_create_uint32(env, n, &argv[0]);
  if (cb != NULL && napi_make_callback(env, s->async, recv, cb, 1, argv, NULL) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

/* Hands the batch to JavaScript, never re-entrantly. Reads only happen in poll callbacks, so while JavaScript runs
 * the only records that can arrive are failures of the calls it makes (a poll that cannot start); those are handed
 * over in a further round. Every data record is in the first round, after which the arena is free again. */
static void flush(io_state_t *s) {
  if (s->in_flush) return;
  while (s->count > 0) {
    uint32_t n = s->count;
    s->in_flush = 1;
    deliver(s, n);
    s->in_flush = 0;
    s->arena_used = 0;
    s->count -= n;
    if (s->count > 0) memmove(s->records, s->records + (size_t)n * 4, (size_t)s->count * 4 * sizeof(int32_t));
  }
}

static void on_check(uv_check_t *handle) {
  io_state_t *s = handle->data;
  flush(s);
  uv_check_stop(&s->check);
  s->check_active = 0;
}

static void record(io_conn_t *c, int32_t kind, int32_t off, int32_t len) {
  io_state_t *s = c->state;
  if (s->count >= MAX_RECORDS) {
    /* Full while JavaScript runs: a few hundred connections failed inside one batch, and this report is lost. */
    if (s->in_flush && s->count == MAX_RECORDS + RECORD_HEADROOM) return;
    if (!s->in_flush) flush(s);
  }
  int32_t *r = s->records + (size_t)s->count * 4;
  r[0] = c->id;
  r[1] = kind;
  r[2] = off;
  r[3] = len;
  s->count++;
  if (!s->check_active) {
    s->check_active = 1;
    uv_check_start(&s->check, on_check);
  }
}

static void update_interest(io_conn_t *c) {
  if (c->closed) return;
  int ev = 0;
  if (c->reading && !c->eof && !c->failed) ev |= UV_READABLE;
  if (c->head != NULL && !c->failed) ev |= UV_WRITABLE;
  if (ev == c->events) return;
  c->events = ev;
  int rc = ev == 0 ? uv_poll_stop(&c->poll) : uv_poll_start(&c->poll, ev, on_poll);
  if (rc != 0) fail(c, -rc);
}

static void fail(io_conn_t *c, int err) {
  if (c->failed || c->closed) return;
  c->failed = 1;
  record(c, REC_ERROR, 0, -err);
  update_interest(c);
}

static void do_shutdown(io_conn_t *c) {
  c->shut = 1;
  /* A peer already gone (ENOTCONN) has nothing left to hear; the connection still ends normally. */
  shutdown(c->fd, SHUT_WR);
}

/* Sends from the queue; returns -1 after recording an error. */
static int flush_queue(io_conn_t *c) {
  while (c->head != NULL) {
    chunk_t *k = c->head;
    ssize_t w = send(c->fd, k->data + k->off, k->len - k->off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      fail(c, errno);
      return -1;
    }
    k->off += (size_t)w;
    c->queued -= (size_t)w;
    if (k->off < k->len) continue;
    c->head = k->next;
    if (c->head == NULL) c->tail = NULL;
    free(k);
  }
  return 0;
}

static void do_reads(io_conn_t *c) {
  io_state_t *s = c->state;
  for (int n_reads = 0; n_reads < READS_PER_EVENT; n_reads++) {
    /* Room for the bytes and their record first: a data record must never be the one that triggers a flush, which
     * would free the arena under it. */
    if (ARENA_BYTES - s->arena_used < READ_ROOM || s->count >= MAX_RECORDS) flush(s);
    /* The flush ran JavaScript, which may have paused or closed this connection. */
    if (c->closed || c->failed || !c->reading || c->eof) return;
    size_t room = ARENA_BYTES - s->arena_used;
    ssize_t n = recv(c->fd, s->arena + s->arena_used, room, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(c, errno);
      return;
    }
    if (n == 0) {
      c->eof = 1;
      record(c, REC_EOF, 0, 0);
      return;
    }
    record(c, REC_DATA, (int32_t)s->arena_used, (int32_t)n);
    s->arena_used += (size_t)n;
    if ((size_t)n < room) return;
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  io_conn_t *c = handle->data;
  if (c->closed || c->failed) return;
  if (status < 0) {
    /* libuv reports EPOLLERR as UV_EBADF; the socket's own error says what happened (ECONNRESET, ...). */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    fail(c, err);
    return;
  }
  if ((events & UV_WRITABLE) && c->head != NULL) {
    if (flush_queue(c) < 0) return;
    if (c->head == NULL) {
      if (c->want_drain) {
        c->want_drain = 0;
        record(c, REC_DRAIN, 0, 0);
      }
      if (c->end_requested && !c->shut) {
        do_shutdown(c);
        record(c, REC_SHUTDOWN, 0, 0);
      }
    }
  }
  if ((events & UV_READABLE) && !c->closed) do_reads(c);
  update_interest(c);
}

static void on_poll_closed(uv_handle_t *handle) {
  conn_release(handle->data);
}

/* `close_cb` is NULL when the environment is going away: the addon may be unloaded before libuv runs close
 * callbacks then, so nothing of ours may be called, and the connection's memory is left to the process. */
static void close_conn_with(io_conn_t *c, uv_close_cb close_cb) {
  if (c->closed) return;
  c->closed = 1;
  if (c->prev != NULL) c->prev->next = c->next;
  else c->state->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  io_state_t *s = c->state;
  s->slots[c->slot] = NULL;
  s->free_slots[s->n_free++] = c->slot;
  uv_close((uv_handle_t *)&c->poll, close_cb);
  close(c->fd);
  free_queue(c);
}

static void close_conn(io_conn_t *c) {
  close_conn_with(c, on_poll_closed);
}

static void external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  io_conn_t *c = data;
  /* JavaScript dropped the connection without closing it (it always closes; this is the safety net). */
  close_conn(c);
  conn_release(c);
}

static io_conn_t *conn_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "EINVAL", "expects a connection from ioOpen");
    return NULL;
  }
  return data;
}

/* The connection passed as the first argument (its external); NULL (with a TypeError thrown) otherwise. */
static io_conn_t *conn_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  /* A missing argument arrives as undefined, which conn_of refuses. */
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return conn_of(env, argv[0]);
}

/* The connection named by [slot, id] (ioSlot): *out is NULL when it is closed (its slot freed or taken by another
 * connection since); false, with a TypeError thrown, when the two are not numbers. */
static bool conn_at(napi_env env, napi_value slot_v, napi_value id_v, io_conn_t **out) {
  int32_t slot = -1, id = 0;
  if (napi_get_value_int32(env, slot_v, &slot) != napi_ok || napi_get_value_int32(env, id_v, &id) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expects a connection's slot and id (ioSlot)");
    return false;
  }
  io_state_t *s = thread_state;
  io_conn_t *c = s != NULL && slot >= 0 && (uint32_t)slot < s->n_slots ? s->slots[slot] : NULL;
  *out = c != NULL && c->id == id ? c : NULL;
  return true;
}

/* The connection named by the first two arguments; *out as conn_at. */
static bool conn_at_args(napi_env env, napi_callback_info info, io_conn_t **out) {
  size_t argc = 2;
  napi_value argv[2];
  /* Missing arguments arrive as undefined, which conn_at refuses. */
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return conn_at(env, argv[0], argv[1], out);
}

static napi_value int32_value(napi_env env, int32_t v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* The thread's environment is going away (a worker exiting): its loop may only close once every handle on it has,
 * and the addon may be unloaded before the loop runs close callbacks, so none is given (see close_conn_with). */
static void env_cleanup(void *arg) {
  io_state_t *s = arg;
  while (s->conns != NULL) close_conn_with(s->conns, NULL);
  free(s->slots);
  free(s->free_slots);
  thread_state = NULL;
  uv_close((uv_handle_t *)&s->check, NULL);
}

/* ioInit(onBatch) -> [arena: Buffer, records: ArrayBuffer]; onBatch(count) reads records[0, 4 * count). Once per thread. */
static napi_value io_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype type = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "EINVAL", "ioInit(onBatch) expects a function");
    return NULL;
  }
  if (thread_state != NULL) {
    napi_throw_error(env, "EALREADY", "ioInit: already initialised on this thread");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    napi_throw_error(env, "EINVAL", "ioInit: no event loop");
    return NULL;
  }
  io_state_t *s = calloc(1, sizeof *s);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "ioInit: out of memory");
    return NULL;
  }
  napi_value arena, records, out, name;
  void *arena_data = NULL;
  void *records_data = NULL;
  if (napi_create_buffer(env, ARENA_BYTES, &arena_data, &arena) != napi_ok ||
      napi_create_arraybuffer(env, (MAX_RECORDS + RECORD_HEADROOM) * 4 * sizeof(int32_t), &records_data, &records) != napi_ok) {
    free(s);
    napi_throw_error(env, "ENOMEM", "ioInit: cannot allocate the arena");
    return NULL;
  }
  s->env = env;
  s->arena = arena_data;
  s->records = records_data;
  napi_create_reference(env, arena, 1, &s->arena_ref);
  napi_create_reference(env, records, 1, &s->records_ref);
  napi_create_reference(env, argv[0], 1, &s->callback);
  napi_create_string_utf8(env, "weft.l7io", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->async);
  uv_check_init(loop, &s->check);
  s->check.data = s;
  /* The check handle only ever flushes; it must not keep the process alive. */
  uv_unref((uv_handle_t *)&s->check);
  thread_state = s;
  napi_add_env_cleanup_hook(env, env_cleanup, s);
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, arena);
  napi_set_element(env, out, 1, records);
  return out;
}

/* Doubles the slot table; the new slots go on the free stack, lowest on top. 0, or -1 out of memory. */
static int grow_slots(io_state_t *s) {
  uint32_t n = s->n_slots == 0 ? 64 : s->n_slots * 2;
  io_conn_t **slots = realloc(s->slots, n * sizeof *slots);
  if (slots == NULL) return -1;
  s->slots = slots;
  uint32_t *free_slots = realloc(s->free_slots, n * sizeof *free_slots);
  if (free_slots == NULL) return -1;
  s->free_slots = free_slots;
  for (uint32_t i = n; i > s->n_slots; i--) {
    slots[i - 1] = NULL;
    free_slots[s->n_free++] = i - 1;
  }
  s->n_slots = n;
  return 0;
}

/* ioOpen(fd, id) -> connection: polls a duplicate of `fd`; reads start with ioResume. */
static napi_value io_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1, id = 0;
  io_state_t *s = thread_state;
  if (s == NULL) {
    napi_throw_error(env, "EINVAL", "ioOpen: call ioInit first");
    return NULL;
  }
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &id) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "EINVAL", "ioOpen(fd, id) expects a file descriptor and an id");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  napi_get_uv_event_loop(env, &loop);
  /* Room for one more slot first: every failure below leaves the table as it was. */
  if (s->n_free == 0 && grow_slots(s) != 0) {
    napi_throw_error(env, "ENOMEM", "ioOpen: out of memory");
    return NULL;
  }
  /* On a cache line of its own: the fields a call reads first fill exactly one (see io_conn_t). */
  io_conn_t *c = NULL;
  if (posix_memalign((void **)&c, 64, sizeof *c) != 0) {
    napi_throw_error(env, "ENOMEM", "ioOpen: out of memory");
    return NULL;
  }
  memset(c, 0, sizeof *c);
  c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (c->fd < 0) {
    int err = errno;
    free(c);
    return throw_errno(env, "ioOpen: dup", err);
  }
  int rc = uv_poll_init(loop, &c->poll, c->fd);
  if (rc != 0) {
    close(c->fd);
    free(c);
    napi_throw_error(env, uv_err_name(rc), uv_strerror(rc));
    return NULL;
  }
  c->state = s;
  c->id = id;
  c->slot = s->free_slots[--s->n_free];
  s->slots[c->slot] = c;
  c->poll.data = c;
  c->refs = 2;
  c->next = s->conns;
  if (s->conns != NULL) s->conns->prev = c;
  s->conns = c;
  napi_value external;
  napi_create_external(env, c, external_finalize, NULL, &external);
  return external;
}

/* Sends the parts now as far as the kernel takes them and queues the rest (copied): 1 while the queue is below the
 * high-water mark, 0 when the caller should wait for a drain record, a negative errno when the connection failed. */
static int32_t send_parts(io_conn_t *c, struct iovec *iov, int n_iov) {
  size_t total = 0;
  for (int i = 0; i < n_iov; i++) total += iov[i].iov_len;
  size_t sent = 0;
  if (c->head == NULL && total > 0) {
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n_iov;
    for (;;) {
      ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
      if (w >= 0) {
        sent = (size_t)w;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      int err = errno;
      /* Reported here, synchronously: records are not added while JavaScript runs. */
      c->failed = 1;
      update_interest(c);
      return -err;
    }
  }
  if (sent < total) {
    chunk_t *k = malloc(sizeof *k + (total - sent));
    if (k == NULL) {
      c->failed = 1;
      update_interest(c);
      return -ENOMEM;
    }
    k->next = NULL;
    k->len = total - sent;
    k->off = 0;
    size_t skip = sent, at = 0;
    for (int i = 0; i < n_iov; i++) {
      size_t len = iov[i].iov_len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      memcpy(k->data + at, (char *)iov[i].iov_base + skip, len - skip);
      at += len - skip;
      skip = 0;
    }
    if (c->tail != NULL) c->tail->next = k;
    else c->head = k;
    c->tail = k;
    c->queued += k->len;
    update_interest(c);
  }
  if (c->queued < HIGH_WATER) return 1;
  c->want_drain = 1;
  return 0;
}

/* ioWrite(slot, id, ...parts) -> 1 | 0 | -errno (send_parts): up to four parts, each a Buffer, a latin1 string (a
 * head) or undefined, in one sendmsg; 0 for a closed connection.
 * ioWriteSpliced(slot, id, head, lines, body?) -> the same answers: `head` (a message head, ending in its blank line) with
 * the field lines `lines` (a latin1 string) before its final CRLF, and `body` after it; a forwarded head with the fields
 * filters added, without building it in a new buffer first. */
static napi_value write_parts(napi_env env, napi_callback_info info, bool spliced) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *head = NULL;
  size_t head_len = 0;
  if (spliced) {
    bool is_buffer = false;
    if (argc >= 4) napi_is_buffer(env, argv[2], &is_buffer);
    if (is_buffer) napi_get_buffer_info(env, argv[2], &head, &head_len);
    if (!is_buffer || head_len < 4 || memcmp((char *)head + head_len - 4, "\r\n\r\n", 4) != 0) {
      napi_throw_type_error(env, "EINVAL", "ioWriteSpliced(slot, id, head, lines, body?): head must be a Buffer ending in a blank line");
      return NULL;
    }
    if (argc > 5) argc = 5;
  } else if (argc < 3) {
    napi_throw_type_error(env, "EINVAL", "ioWrite(slot, id, ...parts) expects a part");
    return NULL;
  }
  io_conn_t *c;
  if (!conn_at(env, argv[0], argv[1], &c)) return NULL;
  if (c == NULL || c->closed || c->end_requested) return int32_value(env, 0);
  if (c->failed) return int32_value(env, -EPIPE);
  struct iovec iov[4];
  int n_iov = 0;
  string_room_t room;
  room.used = 0;
  room.n_heap = 0;
  bool ok = true;
  size_t from = 2;
  if (spliced) {
    iov[n_iov++] = (struct iovec){head, head_len - 2};
    ok = add_part(env, argv[3], iov, &n_iov, &room);
    iov[n_iov++] = (struct iovec){(char *)head + head_len - 2, 2};
    from = 4;
  }
  for (size_t i = from; ok && i < argc; i++) ok = add_part(env, argv[i], iov, &n_iov, &room);
  int32_t r = ok ? send_parts(c, iov, n_iov) : 0;
  free_strings(&room);
  return ok ? int32_value(env, r) : NULL;
}

static napi_value io_write(napi_env env, napi_callback_info info) {
  return write_parts(env, info, false);
}

static napi_value io_write_spliced(napi_env env, napi_callback_info info) {
  return write_parts(env, info, true);
}

/* ioEnd(slot, id) -> 1 when the FIN went out now, 0 when it follows the queued bytes (a shutdown record then) or the
 * connection is closed. */
static napi_value io_end(napi_env env, napi_callback_info info) {
  io_conn_t *c;
  if (!conn_at_args(env, info, &c)) return NULL;
  if (c == NULL || c->closed || c->end_requested) return int32_value(env, 0);
  c->end_requested = 1;
  if (c->head != NULL || c->failed) return int32_value(env, 0);
  do_shutdown(c);
  return int32_value(env, 1);
}

/* ioPause(slot, id), ioResume(slot, id): nothing for a closed connection. */
static napi_value set_reading(napi_env env, napi_callback_info info, int reading) {
  io_conn_t *c;
  if (!conn_at_args(env, info, &c) || c == NULL) return NULL;
  c->reading = (unsigned char)reading;
  update_interest(c);
  return NULL;
}

static napi_value io_pause(napi_env env, napi_callback_info info) {
  return set_reading(env, info, 0);
}

static napi_value io_resume(napi_env env, napi_callback_info info) {
  return set_reading(env, info, 1);
}

/* ioClose(conn): stops polling and closes the duplicate fd; unsent bytes are dropped. */
static napi_value io_close(napi_env env, napi_callback_info info) {
  io_conn_t *c = conn_arg(env, info);
  if (c != NULL) close_conn(c);
  return NULL;
}

/* ioSlot(conn) -> the slot that names the connection (with its id) on the per-request calls. */
static napi_value io_slot(napi_env env, napi_callback_info info) {
  io_conn_t *c = conn_arg(env, info);
  return c == NULL ? NULL : int32_value(env, (int32_t)c->slot);
}

/* ioRelease(conn) -> Buffer | undefined: like ioClose, but hands back the bytes not sent yet, for the caller to
 * send through Node's own socket before anything else (a byte tunnel takes the connection over). */
static napi_value io_release(napi_env env, napi_callback_info info) {
  io_conn_t *c = conn_arg(env, info);
  if (c == NULL) return NULL;
  napi_value out = NULL;
  if (!c->closed && c->queued > 0) {
    void *data = NULL;
    if (napi_create_buffer(env, c->queued, &data, &out) == napi_ok) {
      size_t at = 0;
      for (chunk_t *k = c->head; k != NULL; k = k->next) {
        memcpy((char *)data + at, k->data + k->off, k->len - k->off);
        at += k->len - k->off;
      }
    }
  }
  close_conn(c);
  if (out == NULL) napi_get_undefined(env, &out);
  return out;
}

void weft_io_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"ioInit", NULL, io_init, NULL, NULL, NULL, napi_default, NULL},
    {"ioOpen", NULL, io_open, NULL, NULL, NULL, napi_default, NULL},
    {"ioSlot", NULL, io_slot, NULL, NULL, NULL, napi_default, NULL},
    {"ioWrite", NULL, io_write, NULL, NULL, NULL, napi_default, NULL},
    {"ioWriteSpliced", NULL, io_write_spliced, NULL, NULL, NULL, napi_default, NULL},
    {"ioEnd", NULL, io_end, NULL, NULL, NULL, napi_default, NULL},
    {"ioPause", NULL, io_pause, NULL, NULL, NULL, napi_default, NULL},
    {"ioResume", NULL, io_resume, NULL, NULL, NULL, napi_default, NULL},
    {"ioClose", NULL, io_close, NULL, NULL, NULL, napi_default, NULL},
    {"ioRelease", NULL, io_release, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
