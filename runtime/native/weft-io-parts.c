/* ioWrite's parts into an iovec (weft-io-parts.h): Buffers by reference, latin1 strings encoded once. */
#include "weft-io-parts.h"
#include <stdlib.h>
#include <string.h>

void free_strings(string_room_t *r) {
  for (int i = 0; i < r->n_heap; i++) free(r->heap[i]);
  r->n_heap = 0;
}

bool add_part(napi_env env, napi_value v, struct iovec *iov, int *n_iov, string_room_t *r) {
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (is_buffer) {
    void *data = NULL;
    size_t len = 0;
    napi_get_buffer_info(env, v, &data, &len);
    if (len > 0) iov[(*n_iov)++] = (struct iovec){data, len};
    return true;
  }
  napi_valuetype type = napi_undefined;
  napi_typeof(env, v, &type);
  if (type == napi_undefined) return true;
  if (type != napi_string) {
    napi_throw_type_error(env, "EINVAL", "ioWrite: each part must be a Buffer or a string");
    return false;
  }
  /* One copy when it fits the stack area's rest (a result one short of the room may be cut: measured then). */
  size_t room = sizeof r->stack - r->used;
  size_t len = 0;
  char *dst = r->stack + r->used;
  if (room < 2 || napi_get_value_string_latin1(env, v, dst, room, &len) != napi_ok || len + 1 >= room) {
    if (napi_get_value_string_latin1(env, v, NULL, 0, &len) != napi_ok) {
      napi_throw_type_error(env, "EINVAL", "ioWrite: unreadable string");
      return false;
    }
    if (len + 1 <= room) dst = r->stack + r->used;
    else {
      dst = r->n_heap < 4 ? malloc(len + 1) : NULL;
      if (dst == NULL) {
        napi_throw_error(env, "ENOMEM", "ioWrite: out of memory");
        return false;
      }
      r->heap[r->n_heap++] = dst;
    }
    napi_get_value_string_latin1(env, v, dst, len + 1, &len);
  }
  if (dst == r->stack + r->used) r->used += len;
  if (len > 0) iov[(*n_iov)++] = (struct iovec){dst, len};
  return true;
}
