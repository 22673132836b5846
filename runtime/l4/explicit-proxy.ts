/** The local-mode explicit proxy (15080): HTTP CONNECT, absolute-form HTTP and SOCKS5 on one port, resolved by service name or VIP through the same data path. */
import type net from 'node:net';
import { lookup } from 'node:dns/promises';
import { WeftError, isCausedBy, systemErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { ProxyState } from '../state/proxy-state.js';
import { HANDSHAKE_TIMEOUT_MS, MAX_HANDSHAKE_BYTES } from '../config/defaults.js';
import type { ConnectionProxy, ProxyHooks } from './connection-proxy.js';
import { destinationForHost, type Destination } from './route.js';
import { parseGreeting, parseRequest, socksReply, SOCKS_REPLY, type SocksReplyCode } from './socks5.js';
import { parseProxyRequestHead, splitAuthority, toOriginForm } from './http-proxy-request.js';
import { remoteOf } from './original-destination.js';

const HTTP_STATUS_BY_CODE: Partial<Record<WeftError['code'], number>> = {
  WEFT_ERR_UPSTREAM_CONNECT: 502,
  WEFT_ERR_UPSTREAM_TIMEOUT: 504,
  WEFT_ERR_NO_HEALTHY_UPSTREAM: 503,
  WEFT_ERR_CONNECTION_LIMIT: 503,
  WEFT_ERR_UNKNOWN_SERVICE: 502,
  WEFT_ERR_SELF_CALL: 403,
  WEFT_ERR_POLICY_DENIED: 403,
};

/** A response weft generates itself, marked with x-weft-error so nobody mistakes it for the upstream's. */
export function httpErrorResponse(status: number, code: string, message: string): Buffer {
  const body = `${message}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${process.getBuiltinModule('node:http').STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-weft-error: ${code}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function socksCodeFor(error: WeftError): SocksReplyCode {
  if (isCausedBy(error, 'WEFT_ERR_SELF_CALL') || isCausedBy(error, 'WEFT_ERR_POLICY_DENIED')) return SOCKS_REPLY.notAllowed;
  if (isCausedBy(error, 'WEFT_ERR_UPSTREAM_TIMEOUT')) return SOCKS_REPLY.ttlExpired;
  if (systemErrorCode(error.cause) === 'ECONNREFUSED') return SOCKS_REPLY.connectionRefused;
  if (isCausedBy(error, 'WEFT_ERR_CONNECTION_LIMIT')) return SOCKS_REPLY.generalFailure;
  return SOCKS_REPLY.hostUnreachable;
}

export interface ExplicitProxyDeps {
  proxy: ConnectionProxy;
  state: ProxyState;
  metrics: MetricsRegistry;
  logger: Logger;
}

export class ExplicitProxy {
  readonly #deps: ExplicitProxyDeps;
  readonly #handshakeErrors;

  constructor(deps: ExplicitProxyDeps) {
    this.#deps = deps;
    this.#handshakeErrors = deps.metrics.counter('weft_explicit_proxy_handshake_errors_total', 'Explicit-proxy handshakes refused or abandoned', ['protocol', 'reason']);
  }

  /** Reads the handshake (bounded in bytes and time), then hands the connection to the ConnectionProxy. */
  handle(socket: net.Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    let protocol: 'socks5' | 'http' | undefined;
    let socksGreeted = false;
    let done = false;
    const timer = setTimeout(
      () => refuse('timeout', 'handshake not completed in time', protocol === 'socks5' ? socksReply(SOCKS_REPLY.generalFailure) : httpErrorResponse(408, 'WEFT_ERR_BAD_REQUEST', 'proxy handshake timed out')),
      HANDSHAKE_TIMEOUT_MS,
    );
    const finish = (): void => {
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onClose);
      socket.pause();
    };
    const refuse = (reason: string, detail: string, reply?: Buffer): void => {
      if (done) return;
      finish();
      this.#handshakeErrors.inc({ protocol: protocol ?? 'unknown', reason });
      this.#deps.logger.info({ src: `${socket.remoteAddress}:${socket.remotePort}`, protocol, reason, detail }, 'explicit proxy handshake refused');
      if (reply !== undefined && !socket.destroyed) socket.end(reply);
      else socket.destroy();
    };
    const onClose = (): void => refuse('client_gone', 'client closed the connection during the handshake');
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      protocol ??= buf[0] === 0x05 ? 'socks5' : 'http';
      // HTTP's head parser bounds the head alone: body bytes a client sends along with its head do not count.
      if (buf.length > MAX_HANDSHAKE_BYTES && protocol === 'socks5') return refuse('too_large', `handshake over ${MAX_HANDSHAKE_BYTES} bytes`, socksReply(SOCKS_REPLY.generalFailure));
      if (protocol === 'socks5') {
        if (!socksGreeted) {
          const g = parseGreeting(buf);
          if (g.state === 'more') return;
          if (g.state === 'invalid') return refuse('bad_greeting', g.reason, g.reply);
          socket.write(g.reply);
          socksGreeted = true;
          buf = buf.subarray(g.used);
          if (buf.length === 0) return;
        }
        const r = parseRequest(buf);
        if (r.state === 'more') return;
        if (r.state === 'invalid') return refuse('bad_request', r.reason, r.reply);
        finish();
        const rest = buf.subarray(r.used);
        void this.#dispatch(socket, 'socks5', r.host, r.port, rest, {
          onReady: () => void socket.write(socksReply(SOCKS_REPLY.succeeded)),
          onFailure: (error) => socket.write(socksReply(socksCodeFor(error))),
        });
        return;
      }
      const h = parseProxyRequestHead(buf, MAX_HANDSHAKE_BYTES);
      if (h.state === 'more') return;
      if (h.state === 'invalid') return refuse('bad_request', h.reason, httpErrorResponse(h.status, 'WEFT_ERR_BAD_REQUEST', h.reason));
      const { head } = h;
      const rest = buf.subarray(head.headLength);
      const httpFailure = (error: WeftError): void => void socket.write(httpErrorResponse(HTTP_STATUS_BY_CODE[error.code] ?? 502, error.code, error.message));
      if (head.method === 'CONNECT') {
        const authority = splitAuthority(head.target);
        if (authority === undefined) return refuse('bad_authority', `CONNECT target "${head.target}" is not host:port`, httpErrorResponse(400, 'WEFT_ERR_BAD_REQUEST', 'CONNECT needs host:port'));
        finish();
        void this.#dispatch(socket, 'http', authority.host, authority.port, rest, {
          onReady: () => void socket.write(`${head.version} 200 Connection established\r\n\r\n`),
          onFailure: httpFailure,
        });
        return;
      }
      let url: URL;
      try {
        url = new URL(head.target);
      } catch {
        return refuse('not_absolute', 'origin-form request sent to a proxy', httpErrorResponse(400, 'WEFT_ERR_BAD_REQUEST', 'expected an absolute-form URL (http://host/path) or CONNECT'));
      }
      if (url.protocol !== 'http:') return refuse('bad_scheme', `scheme ${url.protocol}`, httpErrorResponse(400, 'WEFT_ERR_BAD_REQUEST', 'only http:// URLs are proxied; use CONNECT for TLS'));
      finish();
      const authority = splitAuthority(url.host, 80);
      if (authority === undefined) return refuse('bad_authority', `bad host ${url.host}`, httpErrorResponse(400, 'WEFT_ERR_BAD_REQUEST', 'bad host'));
      void this.#dispatch(socket, 'http', authority.host, authority.port, Buffer.concat([toOriginForm(head, url), rest]), { onFailure: httpFailure });
    };
    socket.on('data', onData);
    // Listeners are allowHalfOpen, so a client that leaves mid-handshake shows up as 'end', not 'close'.
    socket.once('end', onClose);
    socket.once('close', onClose);
    socket.on('error', () => socket.destroy());
  }

  async #dispatch(socket: net.Socket, protocol: 'socks5' | 'http', host: string, port: number, firstBytes: Buffer, hooks: ProxyHooks): Promise<void> {
    const snapshot = this.#deps.state.current;
    let destination: Destination;
    const parsed = destinationForHost(host, port, snapshot);
    if (parsed.kind === 'hostname') {
      try {
        const { address } = await lookup(parsed.host);
        destination = { kind: 'address', address: { address, port } };
      } catch (err) {
        hooks.onFailure?.(new WeftError('WEFT_ERR_UNKNOWN_SERVICE', `"${host}" is neither a mesh service (name.namespace[.svc.cluster.local]) nor a resolvable host`, { cause: err }));
        this.#handshakeErrors.inc({ protocol, reason: 'unknown_host' });
        socket.end();
        return;
      }
    } else destination = parsed;
    const originalDst = destination.kind === 'address' ? destination.address : { address: destination.service.addresses[0] ?? destination.service.hostname, port };
    await this.#deps.proxy.handle({
      client: socket,
      destination,
      direction: 'outbound',
      listener: 'explicit',
      source: remoteOf(socket),
      originalDst,
      ...(firstBytes.length > 0 ? { firstBytes } : {}),
      hooks,
    });
  }
}
