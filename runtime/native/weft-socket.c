/* The socket calls Node cannot make: transparent (IP_TRANSPARENT) listeners and upstream
 * sockets (bound here, connected by Node), the original destination of a REDIRECTed connection (SO_ORIGINAL_DST) and packet
 * marks (SO_MARK). Everything else about the sockets stays in libuv, which adopts the fds. */
#define _GNU_SOURCE
#include <node_api.h>
#include "weft-napi.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif


static int set_transparent(int fd, int family) {
  int one = 1;
  if (family == AF_INET6) return setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one);
  return setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
}

static int get_string(napi_env env, napi_value v, char *buf, size_t cap) {
  size_t n = 0;
  return napi_get_value_string_utf8(env, v, buf, cap, &n) == napi_ok ? 0 : -1;
}

/* listenTransparent(host, port, backlog) -> fd: a bound, listening, non-blocking socket that
 * accepts connections addressed to any IP (TPROXY delivers them with their original destination). */
static napi_value listen_transparent(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char host[64];
  int32_t port = 0, backlog = 511;
  if (argc < 2 || get_string(env, argv[0], host, sizeof host) != 0 ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "listenTransparent(host, port, backlog?) expects a host string and a port number");
    return NULL;
  }
  if (argc > 2) napi_get_value_int32(env, argv[2], &backlog);
  bool reuse_port = false;
  if (argc > 3) napi_get_value_bool(env, argv[3], &reuse_port);
  struct sockaddr_storage ss;
  socklen_t len;
  int family = weft_parse_addr(host, port, &ss, &len);
  if (family < 0) {
    napi_throw_type_error(env, "EINVAL", "listenTransparent: host must be a literal IPv4 or IPv6 address");
    return NULL;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || set_transparent(fd, family) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt IP_TRANSPARENT (needs CAP_NET_ADMIN)", err);
  }
  /* Each worker thread binds its own socket to the address; the kernel spreads connections between them. */
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt SO_REUSEPORT", err);
  }
  if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind/listen", err);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* originalDestination(fd) -> { address, port } from SO_ORIGINAL_DST (iptables REDIRECT/DNAT). */
static napi_value original_destination(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "originalDestination(fd) expects a file descriptor");
    return NULL;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) != 0) {
    len = sizeof ss;
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) != 0) return throw_errno(env, "getsockopt SO_ORIGINAL_DST", errno);
  }
  char text[INET6_ADDRSTRLEN];
  int port;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  } else {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  }
  napi_value out, addr, p;
  napi_create_object(env, &out);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &addr);
  napi_create_int32(env, port, &p);
  napi_set_named_property(env, out, "address", addr);
  napi_set_named_property(env, out, "port", p);
  return out;
}

/* setMark(fd, mark): SO_MARK, so policy routing and iptables can tell weft's own packets apart. */
static napi_value set_mark(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  uint32_t mark = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_uint32(env, argv[1], &mark) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "setMark(fd, mark) expects two numbers");
    return NULL;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return throw_errno(env, "setsockopt SO_MARK (needs CAP_NET_ADMIN)", errno);
  return NULL;
}

/* bindTransparent(sourceHost, mark) -> fd: a non-blocking TCP socket with IP_TRANSPARENT bound to a foreign source
 * address (port chosen by the kernel), not yet connected: Node adopts it and runs the connect itself, so timeouts
 * and errors follow the ordinary path. */
static napi_value bind_transparent(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char src[64];
  uint32_t mark = 0;
  if (argc < 1 || get_string(env, argv[0], src, sizeof src) != 0) {
    napi_throw_type_error(env, "EINVAL", "bindTransparent(source, mark?) expects a source address");
    return NULL;
  }
  if (argc > 1) napi_get_value_uint32(env, argv[1], &mark);
  struct sockaddr_storage from;
  socklen_t from_len;
  int family = weft_parse_addr(src, 0, &from, &from_len);
  if (family < 0) {
    napi_throw_type_error(env, "EINVAL", "bindTransparent: source must be a literal IPv4 or IPv6 address");
    return NULL;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (set_transparent(fd, family) != 0 || (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)) {
    int err = errno;
    close(fd);
    return throw_errno(env, "setsockopt IP_TRANSPARENT/SO_MARK (needs CAP_NET_ADMIN)", err);
  }
  if (bind(fd, (struct sockaddr *)&from, from_len) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind to source address", err);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

void weft_copy_register(napi_env env, napi_value exports);
void weft_io_register(napi_env env, napi_value exports);
void weft_fdpass_register(napi_env env, napi_value exports);
void weft_netns_register(napi_env env, napi_value exports);
void weft_tls_register(napi_env env, napi_value exports);
void weft_memory_register(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"listenTransparent", NULL, listen_transparent, NULL, NULL, NULL, napi_default, NULL},
    {"originalDestination", NULL, original_destination, NULL, NULL, NULL, napi_default, NULL},
    {"setMark", NULL, set_mark, NULL, NULL, NULL, napi_default, NULL},
    {"bindTransparent", NULL, bind_transparent, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  weft_copy_register(env, exports);
  weft_io_register(env, exports);
  weft_fdpass_register(env, exports);
  weft_netns_register(env, exports);
  weft_tls_register(env, exports);
  weft_memory_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
