/* Helpers shared by the addon's C files. */
#ifndef WEFT_NAPI_H
#define WEFT_NAPI_H

#include <node_api.h>
#include <stdio.h>
#include <string.h>

/* Throws an Error with code "E<errno>" and message "<what>: <strerror>"; returns NULL for the caller to return. */
static inline napi_value throw_errno(napi_env env, const char *what, int err) {
  char code[32];
  char msg[256];
  snprintf(code, sizeof code, "E%d", err);
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

#endif
