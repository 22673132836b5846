/* The HTTP/1 batched I/O engine's connection and per-thread state, shared by the engine (weft-io-engine.c) and its
 * N-API surface (weft-io.c). */
#ifndef WEFT_IO_CONN_H
#define WEFT_IO_CONN_H
#include <node_api.h>
#include <uv.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>


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

/* Drops one reference; the last one frees the connection. */
void io_conn_release(io_conn_t *c);
void io_free_queue(io_conn_t *c);
/* Hands the batch to JavaScript, never re-entrantly. */
void io_flush(io_state_t *s);
void io_record(io_conn_t *c, int32_t kind, int32_t off, int32_t len);
/* Polls for what the connection waits for now (reads, queued bytes); a poll that cannot start fails it. */
void io_update_interest(io_conn_t *c);
void io_fail(io_conn_t *c, int err);
void io_do_shutdown(io_conn_t *c);
/* Sends from the queue; -1 after recording an error. */
int io_flush_queue(io_conn_t *c);
void io_on_poll(uv_poll_t *handle, int status, int events);
/* Stops polling, closes the fd and drops the queue; `close_cb` NULL when the environment is going away. */
void io_close_conn_with(io_conn_t *c, uv_close_cb close_cb);
void io_close_conn(io_conn_t *c);
/* Sends the parts now as far as the kernel takes them and queues the rest (copied): 1 below the high-water mark, 0 to
 * wait for a drain record, a negative errno when the connection failed. */
int32_t io_send_parts(io_conn_t *c, struct iovec *iov, int n_iov);

#endif
