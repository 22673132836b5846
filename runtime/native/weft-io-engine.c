/* The HTTP/1 batched I/O engine: reads of every ready connection land in the thread's arena as records handed to
 * JavaScript once per loop iteration; writes go to the kernel at once, and what it does not take waits in the
 * connection's queue until the fd is writable. Its N-API surface is weft-io.c. */
#define _GNU_SOURCE
#include "weft-io-conn.h"
#include "weft-napi.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void io_conn_release(io_conn_t *c) {
  if (--c->refs == 0) free(c);
}

void io_free_queue(io_conn_t *c) {
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
  if (cb != NULL) weft_make_callback(env, s->async, recv, cb, 1, argv);
  napi_close_handle_scope(env, scope);
}

/* Hands the batch to JavaScript, never re-entrantly. Reads only happen in poll callbacks, so while JavaScript runs
 * the only records that can arrive are failures of the calls it makes (a poll that cannot start); those are handed
 * over in a further round. Every data record is in the first round, after which the arena is free again. */
void io_flush(io_state_t *s) {
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
  io_flush(s);
  uv_check_stop(&s->check);
  s->check_active = 0;
}

void io_record(io_conn_t *c, int32_t kind, int32_t off, int32_t len) {
  io_state_t *s = c->state;
  if (s->count >= MAX_RECORDS) {
    /* Full while JavaScript runs: a few hundred connections failed inside one batch, and this report is lost. */
    if (s->in_flush && s->count == MAX_RECORDS + RECORD_HEADROOM) return;
    if (!s->in_flush) io_flush(s);
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

void io_update_interest(io_conn_t *c) {
  if (c->closed) return;
  int ev = 0;
  if (c->reading && !c->eof && !c->failed) ev |= UV_READABLE;
  if (c->head != NULL && !c->failed) ev |= UV_WRITABLE;
  if (ev == c->events) return;
  c->events = ev;
  int rc = ev == 0 ? uv_poll_stop(&c->poll) : uv_poll_start(&c->poll, ev, io_on_poll);
  if (rc != 0) io_fail(c, -rc);
}

void io_fail(io_conn_t *c, int err) {
  if (c->failed || c->closed) return;
  c->failed = 1;
  io_record(c, REC_ERROR, 0, -err);
  io_update_interest(c);
}

void io_do_shutdown(io_conn_t *c) {
  c->shut = 1;
  /* A peer already gone (ENOTCONN) has nothing left to hear; the connection still ends normally. */
  shutdown(c->fd, SHUT_WR);
}

/* Sends from the queue; returns -1 after recording an error. */
int io_flush_queue(io_conn_t *c) {
  while (c->head != NULL) {
    chunk_t *k = c->head;
    ssize_t w = send(c->fd, k->data + k->off, k->len - k->off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      io_fail(c, errno);
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
    /* Room for the bytes and their record first: a data record must never be the one that triggers a io_flush, which
     * would free the arena under it. */
    if (ARENA_BYTES - s->arena_used < READ_ROOM || s->count >= MAX_RECORDS) io_flush(s);
    /* The flush ran JavaScript, which may have paused or closed this connection. */
    if (c->closed || c->failed || !c->reading || c->eof) return;
    size_t room = ARENA_BYTES - s->arena_used;
    ssize_t n = recv(c->fd, s->arena + s->arena_used, room, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) io_fail(c, errno);
      return;
    }
    if (n == 0) {
      c->eof = 1;
      io_record(c, REC_EOF, 0, 0);
      return;
    }
    io_record(c, REC_DATA, (int32_t)s->arena_used, (int32_t)n);
    s->arena_used += (size_t)n;
    if ((size_t)n < room) return;
  }
}

void io_on_poll(uv_poll_t *handle, int status, int events) {
  io_conn_t *c = handle->data;
  if (c->closed || c->failed) return;
  if (status < 0) {
    /* libuv reports EPOLLERR as UV_EBADF; the socket's own error says what happened (ECONNRESET, ...). */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = -status;
    io_fail(c, err);
    return;
  }
  if ((events & UV_WRITABLE) && c->head != NULL) {
    if (io_flush_queue(c) < 0) return;
    if (c->head == NULL) {
      if (c->want_drain) {
        c->want_drain = 0;
        io_record(c, REC_DRAIN, 0, 0);
      }
      if (c->end_requested && !c->shut) {
        io_do_shutdown(c);
        io_record(c, REC_SHUTDOWN, 0, 0);
      }
    }
  }
  if ((events & UV_READABLE) && !c->closed) do_reads(c);
  io_update_interest(c);
}

static void on_poll_closed(uv_handle_t *handle) {
  io_conn_release(handle->data);
}

/* `close_cb` is NULL when the environment is going away: the addon may be unloaded before libuv runs close
 * callbacks then, so nothing of ours may be called, and the connection's memory is left to the process. */
void io_close_conn_with(io_conn_t *c, uv_close_cb close_cb) {
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
  io_free_queue(c);
}

void io_close_conn(io_conn_t *c) {
  io_close_conn_with(c, on_poll_closed);
}

/* Sends the parts now as far as the kernel takes them and queues the rest (copied): 1 while the queue is below the
 * high-water mark, 0 when the caller should wait for a drain io_record, a negative errno when the connection failed. */
int32_t io_send_parts(io_conn_t *c, struct iovec *iov, int n_iov) {
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
      io_update_interest(c);
      return -err;
    }
  }
  if (sent < total) {
    chunk_t *k = malloc(sizeof *k + (total - sent));
    if (k == NULL) {
      c->failed = 1;
      io_update_interest(c);
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
    io_update_interest(c);
  }
  if (c->queued < HIGH_WATER) return 1;
  c->want_drain = 1;
  return 0;
}
