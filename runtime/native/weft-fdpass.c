/* Listening sockets handed from one weft process to the next (hot upgrade): descriptors travel as SCM_RIGHTS
 * ancillary data over a unix stream socket (unix(7)), which Node's own sockets cannot send or receive. */
#define _GNU_SOURCE
#include <node_api.h>
#include "weft-napi.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The kernel's SCM_MAX_FD: at most this many descriptors per message. */
#define MAX_FDS 253
#define MAX_DATA 65536

/* unixConnect(path) -> fd: a blocking connect to a unix stream socket, close-on-exec. */
static napi_value unix_connect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], sa.sun_path, sizeof sa.sun_path, &n) != napi_ok || n == 0 || n >= sizeof sa.sun_path - 1) {
    napi_throw_type_error(env, NULL, "unixConnect(path): path must be a non-empty string shorter than 107 bytes");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "connect", err);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* fdSend(sock, data, fds): one sendmsg carrying `data` and the descriptors; waits (poll, up to 5 s) while the
 * socket buffer is full, so a non-blocking socket owned by libuv works too. Returns the bytes sent. */
static napi_value fd_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock;
  void *data = NULL;
  size_t len = 0;
  uint32_t count = 0;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &sock) != napi_ok || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok ||
      napi_get_array_length(env, argv[2], &count) != napi_ok || count > MAX_FDS || len == 0) {
    napi_throw_type_error(env, NULL, "fdSend(sock, data, fds): a socket fd, a non-empty Buffer and at most 253 fds");
    return NULL;
  }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    napi_get_element(env, argv[2], i, &v);
    if (napi_get_value_int32(env, v, &fds[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "fdSend: fds must be integers");
      return NULL;
    }
  }
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (count > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  }
  for (;;) {
    ssize_t sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (sent >= 0) {
      napi_value out;
      napi_create_int64(env, sent, &out);
      return out;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return throw_errno(env, "sendmsg", errno);
    struct pollfd p = {.fd = sock, .events = POLLOUT};
    if (poll(&p, 1, 5000) <= 0) return throw_errno(env, "sendmsg (socket stayed full)", ETIMEDOUT);
  }
}

/* fdReceive(sock, timeoutMs) -> { data, fds } | null: one recvmsg after waiting up to timeoutMs for it; null on
 * timeout, empty data at end of stream. Received descriptors are close-on-exec. */
static napi_value fd_receive(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock, timeout;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &sock) != napi_ok || napi_get_value_int32(env, argv[1], &timeout) != napi_ok) {
    napi_throw_type_error(env, NULL, "fdReceive(sock, timeoutMs)");
    return NULL;
  }
  struct pollfd p = {.fd = sock, .events = POLLIN};
  int ready;
  do ready = poll(&p, 1, timeout); while (ready < 0 && errno == EINTR);
  if (ready < 0) return throw_errno(env, "poll", errno);
  napi_value result;
  if (ready == 0) {
    napi_get_null(env, &result);
    return result;
  }
  char *data = malloc(MAX_DATA);
  if (data == NULL) return throw_errno(env, "malloc", ENOMEM);
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = MAX_DATA};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t got;
  do got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (got < 0 && errno == EINTR);
  if (got < 0) {
    int err = errno;
    free(data);
    return throw_errno(env, "recvmsg", err);
  }
  napi_value buffer, fds;
  napi_create_buffer_copy(env, (size_t)got, data, NULL, &buffer);
  free(data);
  napi_create_array(env, &fds);
  uint32_t n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *list = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k; i++) {
      napi_value v;
      napi_create_int32(env, list[i], &v);
      napi_set_element(env, fds, n++, v);
    }
  }
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "data", buffer);
  napi_set_named_property(env, result, "fds", fds);
  napi_value truncated;
  napi_get_boolean(env, (msg.msg_flags & MSG_CTRUNC) != 0, &truncated);
  napi_set_named_property(env, result, "truncated", truncated);
  return result;
}

/* closeFd(fd): for inherited descriptors nobody adopted. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "closeFd(fd)");
    return NULL;
  }
  close(fd);
  return NULL;
}

/* dupFd(fd) -> fd: a close-on-exec duplicate. A worker thread lends its listening sockets to the thread that hands them
 * over as duplicates, so a listener closing meanwhile cannot leave a reused descriptor number in the batch. */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "dupFd(fd)");
    return NULL;
  }
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return throw_errno(env, "dup", errno);
  napi_value out;
  napi_create_int32(env, copy, &out);
  return out;
}

/* exitNow(code): _exit(2), without Node's environment teardown. For a drained process whose worker thread is stuck in
 * that teardown (Node's CleanupHandles waiting on a TCP handle that never closes, runtime/upgrade/README.md):
 * process.exit() would join the thread and wait with it. */
static napi_value exit_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t code = 0;
  if (argc >= 1) napi_get_value_int32(env, argv[0], &code);
  _exit(code);
}

void weft_fdpass_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"unixConnect", NULL, unix_connect, NULL, NULL, NULL, napi_default, NULL},
    {"fdSend", NULL, fd_send, NULL, NULL, NULL, napi_default, NULL},
    {"fdReceive", NULL, fd_receive, NULL, NULL, NULL, napi_default, NULL},
    {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
    {"dupFd", NULL, dup_fd, NULL, NULL, NULL, napi_default, NULL},
    {"exitNow", NULL, exit_now, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
