/* The JavaScript face of a native HBONE connection's streams (weft-h2.c): hand a stream's socket to the addon, reset
 * or drain it, and ask how long it has been idle. */
#include "weft-hbone.h"
#include "weft-napi.h"
#include <errno.h>

static hconn_t *conn_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

/* The open connection and stream id of a (conn, streamId) call, or NULL (a closed connection or bad arguments). */
static hconn_t *open_stream_args(napi_env env, napi_callback_info info, uint32_t *sid) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  hconn_t *c = argc < 2 ? NULL : conn_of(env, argv[0]);
  return c != NULL && !c->closed && napi_get_value_uint32(env, argv[1], sid) == napi_ok ? c : NULL;
}

/* hboneNative(conn, streamId, fd, armed) -> 0 or a negative errno: the stream's DATA moves between the TLS connection
 * and a duplicate of `fd` from now on. `armed` false: wait for node:http2's HEADERS on the stream (a 200 still queued). */
static napi_value hbone_native(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t sid = 0;
  int32_t fd = -1;
  bool armed = false;
  hconn_t *c = argc < 4 ? NULL : conn_of(env, argv[0]);
  if (c == NULL || napi_get_value_uint32(env, argv[1], &sid) != napi_ok || napi_get_value_int32(env, argv[2], &fd) != napi_ok || napi_get_value_bool(env, argv[3], &armed) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "hboneNative(conn, streamId, fd, armed)");
    return NULL;
  }
  int rc = c->closed ? -ENOTCONN : h2_stream_exists(c, sid) ? -EEXIST : h2_stream_open(c, sid, fd, armed);
  napi_create_int32(env, rc, &out);
  return out;
}

/* hboneStreamAbort(conn, streamId): resets the stream's socket; STREAM_DONE follows. */
static napi_value hbone_stream_abort(napi_env env, napi_callback_info info) {
  uint32_t sid = 0;
  hconn_t *c = open_stream_args(env, info, &sid);
  if (c != NULL) h2_stream_abort(c, sid, 0);
  return NULL;
}

/* hboneStreamDrain(conn, streamId): an orderly end from weft's side (the drain deadline): nothing more is framed from
 * the socket (END_STREAM follows the DATA already framed), FIN to the socket after the peer's queued DATA, and the
 * socket's late bytes are dropped until its FIN; STREAM_DONE follows, or hboneStreamAbort cuts a socket that never ends. */
static napi_value hbone_stream_drain(napi_env env, napi_callback_info info) {
  uint32_t sid = 0;
  hconn_t *c = open_stream_args(env, info, &sid);
  if (c != NULL) h2_stream_drain(c, sid);
  return NULL;
}

/* hboneStreamIdleMs(conn, streamId) -> milliseconds of loop time since the stream last moved a byte; -1 once it ended. */
static napi_value hbone_stream_idle_ms(napi_env env, napi_callback_info info) {
  napi_value out;
  uint32_t sid = 0;
  hconn_t *c = open_stream_args(env, info, &sid);
  napi_create_double(env, c != NULL ? h2_stream_idle_ms(c, sid) : -1, &out);
  return out;
}

void weft_h2_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"hboneStreamIdleMs", NULL, hbone_stream_idle_ms, NULL, NULL, NULL, napi_default, NULL},
    {"hboneStreamDrain", NULL, hbone_stream_drain, NULL, NULL, NULL, napi_default, NULL},
    {"hboneNative", NULL, hbone_native, NULL, NULL, NULL, napi_default, NULL},
    {"hboneStreamAbort", NULL, hbone_stream_abort, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
