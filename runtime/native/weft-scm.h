/* Descriptors over unix sockets (SCM_RIGHTS, unix(7)) for the addon: one sendmsg or recvmsg carrying bytes and file
 * descriptors, and the JavaScript side of both (an array of fds in, `{ data, fds, truncated }` out). Shared by the hot
 * upgrade (weft-fdpass.c) and the in-pod ZDS hand-off (weft-netns.c). */
#ifndef WEFT_SCM_H
#define WEFT_SCM_H

#include <node_api.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The kernel's SCM_MAX_FD: no message carries more. */
#define WEFT_SCM_MAX_FDS 253

/* Reads a JavaScript array of at most `max` int32s into `out`. Returns the count; -1 when it is not such an array (or
 * too long), -2 when an element is not an int32. */
static inline int weft_scm_fds_arg(napi_env env, napi_value array, int *out, uint32_t max) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array || napi_get_array_length(env, array, &n) != napi_ok || n > max) return -1;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    if (napi_get_element(env, array, i, &v) != napi_ok || napi_get_value_int32(env, v, &out[i]) != napi_ok) return -2;
  }
  return (int)n;
}

/* One sendmsg of `len` bytes with `nfds` descriptors attached (the receiver gets its own copies), EINTR retried.
 * Returns what sendmsg returned; errno is set when that is -1. */
static inline ssize_t weft_scm_send(int sock, const void *data, size_t len, const int *fds, uint32_t nfds) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * WEFT_SCM_MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

/* One recvmsg of at most `cap` bytes into `buf`, EINTR retried. Descriptors arrive close-on-exec in `fds` (room for
 * `max_fds`: the control buffer is sized for that many, so the kernel cuts more and sets MSG_CTRUNC), their count in
 * `*nfds`, the message flags in `*flags`. Returns what recvmsg returned; errno is set when that is -1. */
static inline ssize_t weft_scm_recv(int sock, void *buf, size_t cap, int *fds, uint32_t max_fds, uint32_t *nfds, int *flags) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * WEFT_SCM_MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = CMSG_SPACE(sizeof(int) * max_fds)};
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  *nfds = 0;
  *flags = 0;
  if (n < 0) return n;
  *flags = msg.msg_flags;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *got = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      if (*nfds < max_fds) fds[(*nfds)++] = got[i];
      else close(got[i]);
    }
  }
  return n;
}

/* `{ data, fds, truncated }`: the bytes copied into a Buffer, the descriptors (now the caller's), and whether the kernel
 * cut anything (`truncating_flags` of the message flags, MSG_CTRUNC and/or MSG_TRUNC). */
static inline napi_value weft_scm_result(napi_env env, const void *data, size_t len, const int *fds, uint32_t nfds, int flags, int truncating_flags) {
  napi_value out, buffer, array, truncated;
  napi_create_object(env, &out);
  napi_create_buffer_copy(env, len, data, NULL, &buffer);
  napi_create_array_with_length(env, nfds, &array);
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value v;
    napi_create_int32(env, fds[i], &v);
    napi_set_element(env, array, i, v);
  }
  napi_get_boolean(env, (flags & truncating_flags) != 0, &truncated);
  napi_set_named_property(env, out, "data", buffer);
  napi_set_named_property(env, out, "fds", array);
  napi_set_named_property(env, out, "truncated", truncated);
  return out;
}

#endif
