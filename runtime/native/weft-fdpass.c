/* Listening sockets handed from one weft process to the next (hot upgrade): descriptors travel as SCM_RIGHTS
 * ancillary data over a unix stream socket (unix(7)), which Node's own sockets cannot send or receive. */
#define _GNU_SOURCE
#include <node_api.h>
#include "weft-napi.h"
#include "weft-scm.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
  int fds[WEFT_SCM_MAX_FDS];
  int count = -1;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &sock) != napi_ok || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || len == 0 ||
      (count = weft_scm_fds_arg(env, argv[2], fds, WEFT_SCM_MAX_FDS)) == -1) {
    napi_throw_type_error(env, NULL, "fdSend(sock, data, fds): a socket fd, a non-empty Buffer and at most 253 fds");
    return NULL;
  }
  if (count < 0) {
    napi_throw_type_error(env, NULL, "fdSend: fds must be integers");
    return NULL;
  }
  for (;;) {
    ssize_t sent = weft_scm_send(sock, data, len, fds, (uint32_t)count);
    if (sent >= 0) {
      napi_value out;
      napi_create_int64(env, sent, &out);
      return out;
    }
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
  if (ready == 0) {
    napi_value result;
    napi_get_null(env, &result);
    return result;
  }
  char *data = malloc(MAX_DATA);
  if (data == NULL) return throw_errno(env, "malloc", ENOMEM);
  int fds[WEFT_SCM_MAX_FDS];
  uint32_t nfds = 0;
  int flags = 0;
  ssize_t got = weft_scm_recv(sock, data, MAX_DATA, fds, WEFT_SCM_MAX_FDS, &nfds, &flags);
  if (got < 0) {
    int err = errno;
    free(data);
    return throw_errno(env, "recvmsg", err);
  }
  napi_value result = weft_scm_result(env, data, (size_t)got, fds, nfds, flags, MSG_CTRUNC);
  free(data);
  return result;
}

/* The one int32 argument of closeFd, dupFd and exitNow; 0, or -1 after throwing a TypeError naming `usage`. */
static int int_arg(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], fd) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return -1;
  }
  return 0;
}

/* closeFd(fd): for inherited descriptors nobody adopted. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_arg(env, info, "closeFd(fd)", &fd) == 0) close(fd);
  return NULL;
}

/* dupFd(fd) -> fd: a close-on-exec duplicate. A worker thread lends its listening sockets to the thread that hands them
 * over as duplicates, so a listener closing meanwhile cannot leave a reused descriptor number in the batch. */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (int_arg(env, info, "dupFd(fd)", &fd) != 0) return NULL;
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
  int32_t code;
  if (int_arg(env, info, "exitNow(code)", &code) != 0) return NULL;
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
