/* ioWrite's parts gathered into an iovec without copying Buffers: latin1 strings (heads, field lines) are encoded into
 * one stack area, a longer one into the heap, freed together once the write returned. */
#ifndef WEFT_IO_PARTS_H
#define WEFT_IO_PARTS_H
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* Heads are short; a longer string is copied to the heap. */
#define STACK_STRING 4096

typedef struct {
  char stack[STACK_STRING];
  size_t used;
  char *heap[4];
  int n_heap;
} string_room_t;

void free_strings(string_room_t *r);

/* Adds `v` (a Buffer, a latin1 string, or undefined: nothing) to `iov`; false with an exception pending otherwise. */
bool add_part(napi_env env, napi_value v, struct iovec *iov, int *n_iov, string_room_t *r);

#endif
