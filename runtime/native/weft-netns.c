/* In-pod capture's system calls: sockets created inside another network namespace (the calling thread enters it with
 * setns, makes the socket, and returns; a socket keeps the namespace it was created in), the addresses of a namespace,
 * and SOCK_SEQPACKET unix sockets that carry file descriptors (SCM_RIGHTS), with a libuv readability watch, for the
 * ZDS hand-off between the node agent and the runtime. Node's own net module can do none of these. */
#define _GNU_SOURCE
#include <node_api.h>
#include "weft-napi.h"
#include "weft-scm.h"
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FDS 8
#define MAX_PACKET 65536

/* Enters `ns_fd`'s network namespace on this thread; returns the fd of the namespace to come back to, or -1. */
static int enter_netns(int ns_fd) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return -1;
  if (setns(ns_fd, CLONE_NEWNET) != 0) {
    int err = errno;
    close(self);
    errno = err;
    return -1;
  }
  return self;
}

/* Going back cannot fail short of a kernel bug; if it did, the JavaScript thread would carry on inside a pod's
 * namespace and open every later socket there, so the process stops instead (ztunnel panics likewise). */
static void leave_netns(int self) {
  int err = errno;
  if (setns(self, CLONE_NEWNET) != 0) {
    fprintf(stderr, "weft: cannot return to the runtime's network namespace: %s\n", strerror(errno));
    abort();
  }
  close(self);
  errno = err;
}

static int arg_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int arg_str(napi_env env, napi_value v, char *buf, size_t cap) {
  size_t n = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return -1;
  return napi_get_value_string_utf8(env, v, buf, cap, &n) == napi_ok ? 0 : -1;
}

static napi_value int_value(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* Back to the runtime's namespace with the socket made there: its fd, or the error of the step that failed (`step`),
 * the socket closed. errno is read before setns can change it. */
static napi_value leave_with_socket(napi_env env, int self, int fd, const char *step) {
  int err = errno;
  leave_netns(self);
  if (step != NULL) {
    if (fd >= 0) close(fd);
    return throw_errno(env, step, err);
  }
  return int_value(env, fd);
}

/* netnsListen(nsFd, host, port, backlog, mark[, udp]) -> fd: a non-blocking TCP listener (or, with `udp` true, a bound UDP
 * socket) created inside the namespace on an IPv4 or IPv6 address (an IPv6 one is IPV6_V6ONLY, so `::` and `0.0.0.0`
 * bind side by side), SO_REUSEADDR and SO_REUSEPORT (each worker thread, and a new runtime during an upgrade, binds the
 * same ports beside the others) and SO_MARK (accepted sockets and replies inherit it, so the pod's rules never capture
 * weft's own packets). */
static napi_value netns_listen(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t ns_fd = -1, port = 0, backlog = 511, mark = 0;
  bool udp = false;
  char host[INET6_ADDRSTRLEN];
  if (argc < 5 || arg_int(env, argv[0], &ns_fd) != 0 || arg_str(env, argv[1], host, sizeof host) != 0 || arg_int(env, argv[2], &port) != 0 ||
      arg_int(env, argv[3], &backlog) != 0 || arg_int(env, argv[4], &mark) != 0 || (argc > 5 && napi_get_value_bool(env, argv[5], &udp) != napi_ok)) {
    napi_throw_type_error(env, "EINVAL", "netnsListen(nsFd, host, port, backlog, mark[, udp]) expects a namespace fd, an IP address, three numbers and a boolean");
    return NULL;
  }
  struct sockaddr_storage sa;
  socklen_t salen = 0;
  if (weft_parse_addr(host, port, &sa, &salen) < 0) {
    napi_throw_type_error(env, "EINVAL", "netnsListen: host must be a literal IPv4 or IPv6 address");
    return NULL;
  }
  int self = enter_netns(ns_fd);
  if (self < 0) return throw_errno(env, "setns into the pod's network namespace (needs CAP_SYS_ADMIN)", errno);
  int fd = socket(sa.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  uint32_t m = (uint32_t)mark;
  const char *step = "socket";
  if (fd >= 0) {
    step = "setsockopt SO_REUSEADDR/SO_REUSEPORT/SO_MARK/IPV6_V6ONLY";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
        (m == 0 || setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) == 0) &&
        (sa.ss_family != AF_INET6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0)) {
      step = udp ? "bind in the pod's namespace" : "bind/listen in the pod's namespace";
      if (bind(fd, (struct sockaddr *)&sa, salen) == 0 && (udp || listen(fd, backlog) == 0)) step = NULL;
    }
  }
  return leave_with_socket(env, self, fd, step);
}

/* netnsSocket(nsFd, source, mark[, family]) -> fd: an unconnected non-blocking TCP socket created inside the namespace, for
 * Node to connect (the connection leaves from the pod, with the pod's own address); with a non-empty `source` it is bound
 * there with IP_TRANSPARENT / IPV6_TRANSPARENT (the inbound side connects to the application from the client's real
 * address) and takes the source's family, else `family` (4 or 6, the destination's; default 4). */
static napi_value netns_socket(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t ns_fd = -1, mark = 0, family = 4;
  char source[INET6_ADDRSTRLEN];
  if (argc < 3 || arg_int(env, argv[0], &ns_fd) != 0 || arg_str(env, argv[1], source, sizeof source) != 0 || arg_int(env, argv[2], &mark) != 0 ||
      (argc > 3 && arg_int(env, argv[3], &family) != 0)) {
    napi_throw_type_error(env, "EINVAL", "netnsSocket(nsFd, source, mark[, family]) expects a namespace fd, an address ('' for none), a mark and 4 or 6");
    return NULL;
  }
  struct sockaddr_storage sa;
  socklen_t salen = 0;
  if (source[0] != '\0' && weft_parse_addr(source, 0, &sa, &salen) < 0) {
    napi_throw_type_error(env, "EINVAL", "netnsSocket: source must be a literal IPv4 or IPv6 address");
    return NULL;
  }
  int af = salen != 0 ? sa.ss_family : family == 6 ? AF_INET6 : AF_INET;
  int self = enter_netns(ns_fd);
  if (self < 0) return throw_errno(env, "setns into the pod's network namespace (needs CAP_SYS_ADMIN)", errno);
  int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  uint32_t m = (uint32_t)mark;
  const char *step = fd < 0 ? "socket" : NULL;
  if (step == NULL && m != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) != 0) step = "setsockopt SO_MARK (needs CAP_NET_ADMIN)";
  if (step == NULL && salen != 0) {
    int rc = af == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one) : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
    if (rc != 0) step = "setsockopt IP_TRANSPARENT (needs CAP_NET_ADMIN)";
    else if (bind(fd, (struct sockaddr *)&sa, salen) != 0) step = "bind to the client's address";
  }
  return leave_with_socket(env, self, fd, step);
}

/* netnsAddresses(nsFd) -> string[]: the namespace's IPv4 and IPv6 addresses other than loopback and IPv6 link-local (the pod's own IPs). */
static napi_value netns_addresses(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t ns_fd = -1;
  if (argc < 1 || arg_int(env, argv[0], &ns_fd) != 0) {
    napi_throw_type_error(env, "EINVAL", "netnsAddresses(nsFd) expects a namespace fd");
    return NULL;
  }
  int self = enter_netns(ns_fd);
  if (self < 0) return throw_errno(env, "setns into the pod's network namespace (needs CAP_SYS_ADMIN)", errno);
  struct ifaddrs *list = NULL;
  int rc = getifaddrs(&list);
  int err = errno;
  leave_netns(self);
  if (rc != 0) return throw_errno(env, "getifaddrs", err);
  napi_value out;
  napi_create_array(env, &out);
  uint32_t n = 0;
  for (struct ifaddrs *a = list; a != NULL; a = a->ifa_next) {
    if (a->ifa_addr == NULL) continue;
    char text[INET6_ADDRSTRLEN];
    if (a->ifa_addr->sa_family == AF_INET) {
      struct in_addr in = ((struct sockaddr_in *)a->ifa_addr)->sin_addr;
      if ((ntohl(in.s_addr) >> 24) == 127) continue;
      inet_ntop(AF_INET, &in, text, sizeof text);
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      struct in6_addr *in6 = &((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr;
      /* A pod's own addresses: not loopback, not link-local (fe80::/10 exists on every interface and names no pod). */
      if (IN6_IS_ADDR_LOOPBACK(in6) || IN6_IS_ADDR_LINKLOCAL(in6)) continue;
      inet_ntop(AF_INET6, in6, text, sizeof text);
    } else {
      continue;
    }
    napi_value s;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, out, n++, s);
  }
  freeifaddrs(list);
  return out;
}

static int unix_addr(const char *path, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa->sun_path) return -1;
  strcpy(sa->sun_path, path);
  return 0;
}

/* seqpacketListen(path) / seqpacketConnect(path) -> fd: non-blocking SOCK_SEQPACKET unix sockets (one message per packet,
 * as ZDS frames them). The caller removes a stale socket file before listening. */
static napi_value seqpacket_open(napi_env env, napi_callback_info info, int listening) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  struct sockaddr_un sa;
  if (argc < 1 || arg_str(env, argv[0], path, sizeof path) != 0 || unix_addr(path, &sa) != 0) {
    napi_throw_type_error(env, "EINVAL", "expects a unix socket path shorter than 108 bytes");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket AF_UNIX SOCK_SEQPACKET", errno);
  int rc = listening ? bind(fd, (struct sockaddr *)&sa, sizeof sa) : connect(fd, (struct sockaddr *)&sa, sizeof sa);
  if (rc == 0 && listening) rc = listen(fd, 16);
  if (rc == 0) rc = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (rc != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, listening ? "bind/listen on the unix socket" : "connect to the unix socket", err);
  }
  return int_value(env, fd);
}

static napi_value seqpacket_listen(napi_env env, napi_callback_info info) {
  return seqpacket_open(env, info, 1);
}

static napi_value seqpacket_connect(napi_env env, napi_callback_info info) {
  return seqpacket_open(env, info, 0);
}

/* seqpacketAccept(fd) -> fd, or -1 when no connection is waiting. */
static napi_value seqpacket_accept(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || arg_int(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, "EINVAL", "seqpacketAccept(fd) expects a file descriptor");
    return NULL;
  }
  int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)) return int_value(env, -1);
  if (c < 0) return throw_errno(env, "accept on the unix socket", errno);
  return int_value(env, c);
}

/* seqpacketSend(fd, data, fds) -> bytes: one packet, with `fds` attached as SCM_RIGHTS (the receiver gets its own copies). */
static napi_value seqpacket_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  void *data = NULL;
  size_t len = 0;
  int fds[MAX_FDS];
  int nfds = -1;
  if (argc < 3 || arg_int(env, argv[0], &fd) != 0 || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok ||
      (nfds = weft_scm_fds_arg(env, argv[2], fds, MAX_FDS)) == -1) {
    napi_throw_type_error(env, "EINVAL", "seqpacketSend(fd, buffer, fds) expects a file descriptor, a Buffer and at most 8 fds");
    return NULL;
  }
  if (nfds < 0) {
    napi_throw_type_error(env, "EINVAL", "seqpacketSend: fds must be numbers");
    return NULL;
  }
  ssize_t n = weft_scm_send(fd, data, len, fds, (uint32_t)nfds);
  if (n < 0) return throw_errno(env, "sendmsg on the unix socket", errno);
  return int_value(env, (int)n);
}

/* seqpacketRecv(fd) -> null when nothing is waiting, else { data: Buffer, fds: number[] }; an empty packet with no fds
 * is end of stream (the peer closed). Received fds are close-on-exec and belong to the caller. */
static napi_value seqpacket_recv(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || arg_int(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, "EINVAL", "seqpacketRecv(fd) expects a file descriptor");
    return NULL;
  }
  /* Per call, not static: worker threads may load the addon too, and ZDS messages are few. */
  char *packet = malloc(MAX_PACKET);
  if (packet == NULL) return throw_errno(env, "recvmsg buffer", ENOMEM);
  int fds[MAX_FDS];
  uint32_t nfds = 0;
  int flags = 0;
  ssize_t n = weft_scm_recv(fd, packet, MAX_PACKET, fds, MAX_FDS, &nfds, &flags);
  int err = errno;
  if (n < 0) free(packet);
  if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
    napi_value nul;
    napi_get_null(env, &nul);
    return nul;
  }
  if (n < 0) return throw_errno(env, "recvmsg on the unix socket", err);
  napi_value out = weft_scm_result(env, packet, (size_t)n, fds, nfds, flags, MSG_TRUNC | MSG_CTRUNC);
  free(packet);
  return out;
}

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int closed;
} watch_t;

static void on_watch_closed(uv_handle_t *handle) {
  free(handle->data);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  watch_t *w = handle->data;
  napi_handle_scope scope;
  if (w->closed || napi_open_handle_scope(w->env, &scope) != napi_ok) return;
  napi_value cb, recv, arg;
  napi_get_reference_value(w->env, w->callback, &cb);
  napi_get_global(w->env, &recv);
  napi_create_int32(w->env, status, &arg);
  if (cb != NULL) weft_make_callback(w->env, w->async, recv, cb, 1, &arg);
  napi_close_handle_scope(w->env, scope);
}

/* watchReadable(fd, onReadable) -> handle: calls onReadable(status) each time the fd has something to read (or an error,
 * status < 0) until unwatch(handle). The fd stays the caller's to close, after unwatch. */
static napi_value watch_readable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  napi_valuetype t = napi_undefined;
  if (argc < 2 || arg_int(env, argv[0], &fd) != 0 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "EINVAL", "watchReadable(fd, onReadable) expects a file descriptor and a function");
    return NULL;
  }
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    napi_throw_error(env, "ENOSYS", "watchReadable: no event loop");
    return NULL;
  }
  watch_t *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, "watchReadable", ENOMEM);
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    napi_throw_error(env, uv_err_name(rc), uv_strerror(rc));
    return NULL;
  }
  w->poll.data = w;
  w->env = env;
  napi_value name, external;
  napi_create_string_utf8(env, "weft.seqpacket", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_async_init(env, NULL, name, &w->async);
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, on_readable);
  napi_create_external(env, w, NULL, NULL, &external);
  return external;
}

/* unwatch(handle): stops the watch; the handle must not be used again. */
static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "EINVAL", "unwatch(handle) expects a handle from watchReadable");
    return NULL;
  }
  watch_t *w = data;
  if (w->closed) return NULL;
  w->closed = 1;
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->async);
  uv_close((uv_handle_t *)&w->poll, on_watch_closed);
  return NULL;
}

void weft_netns_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"netnsListen", NULL, netns_listen, NULL, NULL, NULL, napi_default, NULL},
    {"netnsSocket", NULL, netns_socket, NULL, NULL, NULL, napi_default, NULL},
    {"netnsAddresses", NULL, netns_addresses, NULL, NULL, NULL, napi_default, NULL},
    {"seqpacketListen", NULL, seqpacket_listen, NULL, NULL, NULL, napi_default, NULL},
    {"seqpacketConnect", NULL, seqpacket_connect, NULL, NULL, NULL, napi_default, NULL},
    {"seqpacketAccept", NULL, seqpacket_accept, NULL, NULL, NULL, napi_default, NULL},
    {"seqpacketSend", NULL, seqpacket_send, NULL, NULL, NULL, napi_default, NULL},
    {"seqpacketRecv", NULL, seqpacket_recv, NULL, NULL, NULL, napi_default, NULL},
    {"watchReadable", NULL, watch_readable, NULL, NULL, NULL, napi_default, NULL},
    {"unwatch", NULL, unwatch, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
