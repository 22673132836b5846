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
#include "weft-io-conn.h"
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

/* One state per thread: each worker thread has its own loop and its own JavaScript batch callback. */
static __thread io_state_t *thread_state;

static void external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  io_conn_t *c = data;
  /* JavaScript dropped the connection without closing it (it always closes; this is the safety net). */
  io_close_conn(c);
  io_conn_release(c);
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
 * and the addon may be unloaded before the loop runs close callbacks, so none is given (see io_close_conn_with). */
static void env_cleanup(void *arg) {
  io_state_t *s = arg;
  while (s->conns != NULL) io_close_conn_with(s->conns, NULL);
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

/* ioWrite(slot, id, ...parts) -> 1 | 0 | -errno (io_send_parts): up to four parts, each a Buffer, a latin1 string (a
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
  int32_t r = ok ? io_send_parts(c, iov, n_iov) : 0;
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
  io_do_shutdown(c);
  return int32_value(env, 1);
}

/* ioPause(slot, id), ioResume(slot, id): nothing for a closed connection. */
static napi_value set_reading(napi_env env, napi_callback_info info, int reading) {
  io_conn_t *c;
  if (!conn_at_args(env, info, &c) || c == NULL) return NULL;
  c->reading = (unsigned char)reading;
  io_update_interest(c);
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
  if (c != NULL) io_close_conn(c);
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
  io_close_conn(c);
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
