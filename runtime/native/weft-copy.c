/* The L4 copy pump in C: takes over a proxied connection's two sockets (dup'ed fds polled on Node's own libuv loop)
 * and moves bytes both ways with recv/send, so a chunk costs no JavaScript, no ArrayBuffer and no write request.
 * Semantics match runtime/l4/handle-copy.ts: backpressure (a direction stops reading while its sink is full), FIN
 * passed on after the bytes queued before it (shutdown SHUT_WR), the first error ends both directions, and byte
 * counts and the error are reported to JavaScript once, when the copy has ended and both fds are closed. */
#define _GNU_SOURCE
#include <node_api.h>
#include "weft-napi.h"
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One read's worth; libuv's own stream reads use 64 KiB too. */
#define READ_CHUNK (64 * 1024)
/* Reads per readiness event before yielding to the loop, so one busy connection cannot starve the others. */
#define READS_PER_EVENT 16

typedef struct {
  char *data;
  size_t len;
  size_t off;
} pending_t;

typedef struct pump {
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uv_loop_t *loop;
  /* The buffer every read lands in: shared by the pumps of one thread, never held across callbacks. */
  char *scratch;
  int fd[2];
  uv_poll_t poll[2];
  int events[2];
  /* Direction d moves fd[d] -> fd[1 - d]; pending[d] holds what fd[1 - d] did not take yet. */
  pending_t pending[2];
  /* eof[d]: direction d forwards nothing more (its source ended, or the copy drains); shut[d]: its FIN went out. */
  unsigned char eof[2];
  unsigned char shut[2];
  /* peer_eof[i]: fd[i]'s peer sent its FIN. draining: copyDrain ended the copy in order; late bytes are dropped. */
  unsigned char peer_eof[2];
  unsigned char draining;
  uint64_t bytes[2];
  uint64_t last_activity;
  int err_side;
  int err_code;
  int finished;
  int open_polls;
  /* One reference held by JavaScript's external, one by the running pump; freed when both are gone. */
  int refs;
  /* The thread's running pumps, so a worker thread that exits can close their poll handles (env_cleanup). */
  struct pump *prev, *next;
} pump_t;

/* Per thread: each worker thread has its own loop, environment and pumps. */
static __thread pump_t *running_pumps;
static __thread int cleanup_registered;

static void unlink_pump(pump_t *p) {
  if (p->prev != NULL) p->prev->next = p->next;
  else if (running_pumps == p) running_pumps = p->next;
  if (p->next != NULL) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

typedef struct {
  char *scratch;
} instance_t;

static void on_poll(uv_poll_t *handle, int status, int events);

static void release(pump_t *p) {
  if (--p->refs == 0) free(p);
}

static void notify_js(pump_t *p) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[4];
  napi_get_reference_value(env, p->callback, &cb);
  napi_get_global(env, &recv);
  napi_create_double(env, (double)p->bytes[0], &argv[0]);
  napi_create_double(env, (double)p->bytes[1], &argv[1]);
  napi_create_int32(env, p->err_side, &argv[2]);
  napi_create_int32(env, p->err_code, &argv[3]);
  if (cb != NULL) weft_make_callback(env, p->async, recv, cb, 4, argv);
  napi_close_handle_scope(env, scope);
  napi_async_destroy(env, p->async);
  napi_delete_reference(env, p->callback);
}

static void on_poll_closed(uv_handle_t *handle) {
  pump_t *p = handle->data;
  if (--p->open_polls > 0) return;
  notify_js(p);
  release(p);
}

/* The thread's environment is going away (a worker thread exiting or killed): Node closes its loop only once every
 * handle on it has closed, so each running pump's polls close here, with no callback (the addon may be unloaded
 * before libuv runs close callbacks; the pumps' memory is left to the process, as weft-io.c does). Its peers see
 * the connection close, as they would if the thread's net.Sockets were destroyed. */
static void env_cleanup(void *arg) {
  (void)arg;
  while (running_pumps != NULL) {
    pump_t *p = running_pumps;
    unlink_pump(p);
    if (p->finished) continue;
    p->finished = 1;
    for (int i = 0; i < 2; i++) {
      uv_close((uv_handle_t *)&p->poll[i], NULL);
      close(p->fd[i]);
    }
  }
}

/* Ends the copy: both fds are closed at once (the peers see FIN, or RST where unread bytes remain, as with
 * net.Socket.destroy()); JavaScript hears about it from the poll handles' close callbacks, never re-entrantly. */
static void finish(pump_t *p, int err_side, int err_code) {
  if (p->finished) return;
  p->finished = 1;
  unlink_pump(p);
  p->err_side = err_side;
  p->err_code = err_code;
  for (int i = 0; i < 2; i++) {
    uv_close((uv_handle_t *)&p->poll[i], on_poll_closed);
    close(p->fd[i]);
    free(p->pending[i].data);
    p->pending[i].data = NULL;
  }
}

static void update_interest(pump_t *p, int i) {
  if (p->finished) return;
  /* fd[i] is the source of direction i and the sink of direction 1 - i. */
  int ev = 0;
  if (!p->eof[i] && p->pending[i].data == NULL) ev |= UV_READABLE;
  if (p->draining && !p->peer_eof[i]) ev |= UV_READABLE;
  if (p->pending[1 - i].data != NULL) ev |= UV_WRITABLE;
  if (ev == p->events[i]) return;
  p->events[i] = ev;
  int rc = ev == 0 ? uv_poll_stop(&p->poll[i]) : uv_poll_start(&p->poll[i], ev, on_poll);
  if (rc != 0) finish(p, i, rc);
}

/* Both FINs went out; a draining copy also waits for both peers' FINs, so closing leaves no unread byte (which would
 * make the kernel send a reset instead of the FIN already sent). */
static void check_finished(pump_t *p) {
  if (p->shut[0] && p->shut[1] && (!p->draining || (p->peer_eof[0] && p->peer_eof[1]))) finish(p, -1, 0);
}

/* Direction d has seen EOF and delivered everything before it: pass the FIN on. */
static void half_close(pump_t *p, int d) {
  p->shut[d] = 1;
  /* A sink that is already gone (ENOTCONN after a reset) has nothing left to tell; the copy still ends normally,
   * as handle-copy.ts treats a failed shutdown. */
  shutdown(p->fd[1 - d], SHUT_WR);
  check_finished(p);
}

/* Writes `len` bytes to direction d's sink; returns how many it took, or -1 after ending the copy on an error. */
static ssize_t send_some(pump_t *p, int d, const char *data, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = send(p->fd[1 - d], data + off, len - off, MSG_NOSIGNAL);
    if (w >= 0) {
      off += (size_t)w;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    finish(p, 1 - d, -errno);
    return -1;
  }
  return (ssize_t)off;
}

static void flush_pending(pump_t *p, int d) {
  pending_t *q = &p->pending[d];
  ssize_t w = send_some(p, d, q->data + q->off, q->len - q->off);
  if (w < 0) return;
  q->off += (size_t)w;
  if (q->off < q->len) return;
  free(q->data);
  q->data = NULL;
  if (p->eof[d]) half_close(p, d);
}

static void read_some(pump_t *p, int d) {
  for (int k = 0; k < READS_PER_EVENT && !p->finished; k++) {
    ssize_t n = recv(p->fd[d], p->scratch, READ_CHUNK, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) finish(p, d, -errno);
      return;
    }
    if (n == 0) {
      p->eof[d] = 1;
      p->peer_eof[d] = 1;
      half_close(p, d);
      return;
    }
    p->bytes[d] += (uint64_t)n;
    p->last_activity = uv_now(p->loop);
    ssize_t w = send_some(p, d, p->scratch, (size_t)n);
    if (w < 0) return;
    if (w < n) {
      /* Backpressure: keep the rest, stop reading this direction until the sink has taken it. */
      size_t rest = (size_t)(n - w);
      char *copy = malloc(rest);
      if (copy == NULL) {
        finish(p, d, -ENOMEM);
        return;
      }
      memcpy(copy, p->scratch + w, rest);
      p->pending[d] = (pending_t){copy, rest, 0};
      return;
    }
    if (n < READ_CHUNK) return;
  }
}

/* A draining copy reads fd[i] only to drop what its peer still sends, until that peer's FIN. */
static void discard_some(pump_t *p, int i) {
  for (int k = 0; k < READS_PER_EVENT && !p->finished; k++) {
    ssize_t n = recv(p->fd[i], p->scratch, READ_CHUNK, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) finish(p, i, -errno);
      return;
    }
    if (n == 0) {
      p->peer_eof[i] = 1;
      check_finished(p);
      return;
    }
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  pump_t *p = handle->data;
  int i = handle == &p->poll[0] ? 0 : 1;
  if (p->finished) return;
  if (status < 0) {
    /* libuv reports EPOLLERR as UV_EBADF; the socket's own error says what happened (ECONNRESET, ...). */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->fd[i], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    finish(p, i, -err);
    return;
  }
  if ((events & UV_WRITABLE) && p->pending[1 - i].data != NULL) flush_pending(p, 1 - i);
  if ((events & UV_READABLE) && !p->finished && !p->eof[i] && p->pending[i].data == NULL) read_some(p, i);
  else if ((events & UV_READABLE) && !p->finished && p->draining && !p->peer_eof[i]) discard_some(p, i);
  update_interest(p, 0);
  update_interest(p, 1);
}

static void instance_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *inst = data;
  free(inst->scratch);
  free(inst);
}

static char *scratch_of(napi_env env) {
  instance_t *inst = NULL;
  if (napi_get_instance_data(env, (void **)&inst) == napi_ok && inst != NULL) return inst->scratch;
  inst = calloc(1, sizeof *inst);
  if (inst == NULL) return NULL;
  inst->scratch = malloc(READ_CHUNK);
  if (inst->scratch == NULL || napi_set_instance_data(env, inst, instance_finalize, NULL) != napi_ok) {
    free(inst->scratch);
    free(inst);
    return NULL;
  }
  return inst->scratch;
}

static void external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release(data);
}

/* copyStart(fdA, fdB, onEnd) -> handle. Duplicates both fds (the caller then closes its own handles without ending
 * the connection) and copies until both directions ended or either failed; then onEnd(aToB, bToA, errSide, errCode)
 * with errSide -1 (none), 0 (a) or 1 (b) and errCode a negative errno. */
static napi_value copy_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fds[2] = {-1, -1};
  napi_valuetype cb_type = napi_undefined;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &fds[0]) != napi_ok || napi_get_value_int32(env, argv[1], &fds[1]) != napi_ok ||
      napi_typeof(env, argv[2], &cb_type) != napi_ok || cb_type != napi_function || fds[0] < 0 || fds[1] < 0) {
    napi_throw_type_error(env, "EINVAL", "copyStart(fdA, fdB, onEnd) expects two file descriptors and a function");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  char *scratch = scratch_of(env);
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL || scratch == NULL) {
    napi_throw_error(env, "ENOMEM", "copyStart: no event loop or read buffer");
    return NULL;
  }
  pump_t *p = calloc(1, sizeof *p);
  if (p == NULL) return throw_errno(env, "copyStart", ENOMEM);
  p->fd[0] = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
  p->fd[1] = p->fd[0] < 0 ? -1 : fcntl(fds[1], F_DUPFD_CLOEXEC, 0);
  if (p->fd[0] < 0 || p->fd[1] < 0) {
    int err = errno;
    if (p->fd[0] >= 0) close(p->fd[0]);
    free(p);
    return throw_errno(env, "copyStart: dup", err);
  }
  p->env = env;
  p->loop = loop;
  p->scratch = scratch;
  p->err_side = -1;
  p->last_activity = uv_now(loop);
  p->refs = 2;
  napi_value resource_name, external;
  napi_create_string_utf8(env, "weft.l4copy", NAPI_AUTO_LENGTH, &resource_name);
  napi_create_reference(env, argv[2], 1, &p->callback);
  napi_async_init(env, NULL, resource_name, &p->async);
  for (int i = 0; i < 2; i++) {
    int rc = uv_poll_init(loop, &p->poll[i], p->fd[i]);
    if (rc != 0) {
      /* Nothing is polled yet: undo by hand (a poll handle that failed to init must not be closed). */
      if (i == 1) uv_close((uv_handle_t *)&p->poll[0], NULL);
      close(p->fd[0]);
      close(p->fd[1]);
      napi_async_destroy(env, p->async);
      napi_delete_reference(env, p->callback);
      /* The first poll handle's memory must outlive its close; leak the small struct rather than free it early. */
      if (i == 0) free(p);
      napi_throw_error(env, uv_err_name(rc), uv_strerror(rc));
      return NULL;
    }
    p->poll[i].data = p;
    p->open_polls++;
  }
  napi_create_external(env, p, external_finalize, NULL, &external);
  if (!cleanup_registered) {
    napi_add_env_cleanup_hook(env, env_cleanup, NULL);
    cleanup_registered = 1;
  }
  p->next = running_pumps;
  if (running_pumps != NULL) running_pumps->prev = p;
  running_pumps = p;
  update_interest(p, 0);
  update_interest(p, 1);
  return external;
}

static pump_t *pump_of(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expects a handle from copyStart");
    return NULL;
  }
  return data;
}

/* copyAbort(handle): ends the copy now (drain deadline, policy, idle timeout); onEnd still follows. */
static napi_value copy_abort(napi_env env, napi_callback_info info) {
  pump_t *p = pump_of(env, info);
  if (p != NULL) finish(p, -1, 0);
  return NULL;
}

/* copyDrain(handle): ends the copy in order (the drain deadline): each direction forwards nothing more, sends its FIN
 * once its queued bytes are out, and reads its source only to drop late bytes until that peer's FIN; then both fds
 * close with nothing unread. copyAbort still cuts a peer that never ends. onEnd follows as for any end. */
static napi_value copy_drain(napi_env env, napi_callback_info info) {
  pump_t *p = pump_of(env, info);
  if (p == NULL || p->finished || p->draining) return NULL;
  p->draining = 1;
  for (int d = 0; d < 2 && !p->finished; d++) {
    if (p->eof[d]) continue;
    p->eof[d] = 1;
    if (p->pending[d].data == NULL) half_close(p, d);
  }
  check_finished(p);
  update_interest(p, 0);
  update_interest(p, 1);
  return NULL;
}

/* copyIdleMs(handle): milliseconds of loop time since a byte last moved either way. */
static napi_value copy_idle_ms(napi_env env, napi_callback_info info) {
  pump_t *p = pump_of(env, info);
  if (p == NULL) return NULL;
  napi_value out;
  napi_create_double(env, (double)(uv_now(p->loop) - p->last_activity), &out);
  return out;
}

void weft_copy_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"copyStart", NULL, copy_start, NULL, NULL, NULL, napi_default, NULL},
    {"copyAbort", NULL, copy_abort, NULL, NULL, NULL, napi_default, NULL},
    {"copyDrain", NULL, copy_drain, NULL, NULL, NULL, napi_default, NULL},
    {"copyIdleMs", NULL, copy_idle_ms, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
