/* Helpers shared by the addon's C files. */
#ifndef WEFT_NAPI_H
#define WEFT_NAPI_H

#include <node_api.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Older libc headers lack the transparent-proxy socket options (linux/in.h, linux/in6.h values). */
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

/* Throws an Error with code "E<errno>" and message "<what>: <strerror>"; returns NULL for the caller to return. */
static inline napi_value throw_errno(napi_env env, const char *what, int err) {
  char code[32];
  char msg[256];
  snprintf(code, sizeof code, "E%d", err);
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

/* A literal IPv4 or IPv6 address (no brackets) and a port into `ss`; returns the family with the length in `len`, or -1. */
static inline int weft_parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return AF_INET;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return AF_INET6;
  }
  return -1;
}

/* Calls `cb` from a libuv callback within `async`'s context; an exception it throws is reported as uncaught, as a
 * listener's is for any event Node itself emits. */
static inline void weft_make_callback(napi_env env, napi_async_context async, napi_value recv, napi_value cb, size_t argc, const napi_value *argv) {
  if (napi_make_callback(env, async, recv, cb, argc, argv, NULL) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

#endif
