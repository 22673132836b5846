/**
 * Outbound wasi:http requests of functions, on the main thread: the allowlist (Spin's allowed_outbound_hosts syntax)
 * first, then the mesh: an http:// request enters weft's own L7 path as a connection from the function's workload
 * (its address and SPIFFE identity), so routing, authorization and HBONE with the function's certificate apply as to
 * any pod's request. https:// hosts outside the mesh are reached directly over TLS. No sockets reach the guest.
 */
import http from 'node:http';
import https from 'node:https';
import { lookup } from 'node:dns/promises';
import { duplexPair, type Duplex } from 'node:stream';
import type { FunctionConfig } from '../config/function-config-schema.js';
import type { Logger } from '../log.js';
import { destinationForHost } from '../l4/route.js';
import type { L7Target } from '../l7/l7-context.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { StateSnapshot } from '../state/state-snapshot.js';
import { functionAddress } from './function-entities.js';
import type { FromWorker, ToWorker } from './function-messages.js';
import { STREAM_WINDOW_BYTES } from './function-messages.js';
import type { FunctionMetrics } from './function-metrics.js';

type OutMessage = Extract<FromWorker, { t: 'out-req' | 'out-body' | 'out-end' | 'out-drop' | 'out-ack' }>;
type Reply = (m: ToWorker, transfer?: ArrayBuffer[]) => void;

export interface OutboundDeps {
  state: ProxyState;
  metrics: FunctionMetrics;
  logger: Logger;
  /** The L7 path's entry (undefined until it is loaded). */
  l7: () => { handleConnection(socket: Duplex, target: L7Target): void } | undefined;
}

/** True when `scheme://host:port` is allowed by one of Spin-style `entries` (`*` for scheme, port, or a leading label). */
export function isOutboundAllowed(entries: readonly string[], scheme: string, host: string, port: number): boolean {
  for (const entry of entries) {
    const m = /^([^:]+):\/\/(.+?)(?::(\*|\d+))?$/.exec(entry);
    if (m === null) continue;
    const [, s, h, p] = m as unknown as [string, string, string, string | undefined];
    if (s !== '*' && s.toLowerCase() !== scheme) continue;
    const defaultPort = s === 'https' ? 443 : s === 'http' ? 80 : undefined;
    if (p !== '*' && Number(p ?? defaultPort) !== port) continue;
    const hl = h.toLowerCase().replace(/^\[|\]$/g, '');
    if (hl === '*' || hl === host || (hl.startsWith('*.') && host.endsWith(hl.slice(1)))) return true;
  }
  return false;
}

function splitAuthority(authority: string, scheme: string): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(authority);
  if (m === null) return undefined;
  return { host: (m[1] as string).replace(/^\[|\]$/g, '').toLowerCase(), port: m[2] === undefined ? (scheme === 'https' ? 443 : 80) : Number(m[2]) };
}

/** Where an http:// request of a function enters the L7 path: as if the function's workload had opened it. */
async function targetFor(snapshot: StateSnapshot, fn: FunctionConfig, host: string, port: number): Promise<L7Target> {
  const fnWorkload = snapshot.workloadByIp(functionAddress(fn));
  const base = { source: { address: functionAddress(fn), port: 0 }, ...(fnWorkload === undefined ? {} : { sourceIdentity: fnWorkload.identity, upstreamIdentity: fnWorkload.identity }) };
  const dest = destinationForHost(host, port, snapshot);
  if (dest.kind === 'service') {
    const servicePort = dest.service.ports.find((p) => p.port === port);
    return { ...base, service: dest.service, ...(servicePort === undefined ? {} : { servicePort }), originalDst: { address: dest.service.addresses[0] ?? dest.service.endpoints[0]?.addresses[0] ?? '0.0.0.0', port } };
  }
  const address = dest.kind === 'address' ? dest.address.address : (await lookup(host)).address;
  const byVip = snapshot.serviceByVip(address, port);
  if (byVip !== undefined) return { ...base, service: byVip.service, servicePort: byVip.port, originalDst: { address, port } };
  const workload = snapshot.workloadByIp(address);
  return { ...base, ...(workload === undefined ? {} : { workload }), originalDst: { address, port } };
}

interface Exchange {
  request: http.ClientRequest | undefined;
  /** Messages that arrived while the target was being resolved. */
  early: OutMessage[];
  responseInFlight: number;
  response: http.IncomingMessage | undefined;
}

export class FunctionOutbound {
  readonly #deps: OutboundDeps;
  readonly #open = new Map<number, Exchange>();

  constructor(deps: OutboundDeps) {
    this.#deps = deps;
  }

  handle(fn: FunctionConfig, m: OutMessage, reply: Reply): void {
    if (m.t === 'out-req') {
      void this.#start(fn, m, reply);
      return;
    }
    const ex = this.#open.get(m.oid);
    if (ex === undefined) return;
    if (ex.request === undefined) {
      ex.early.push(m);
      return;
    }
    this.#apply(ex, m, reply);
  }

  #apply(ex: Exchange, m: OutMessage, reply: Reply): void {
    const req = ex.request as http.ClientRequest;
    if (m.t === 'out-body') {
      const bytes = m.chunk.length;
      req.write(m.chunk, () => reply({ t: 'out-ack', oid: m.oid, bytes }));
    } else if (m.t === 'out-end') req.end();
    else if (m.t === 'out-drop') {
      this.#open.delete(m.oid);
      req.destroy();
    } else if (m.t === 'out-ack') {
      ex.responseInFlight -= m.bytes;
      if (ex.responseInFlight < STREAM_WINDOW_BYTES / 2) ex.response?.resume();
    }
  }

  async #start(fn: FunctionConfig, m: Extract<OutMessage, { t: 'out-req' }>, reply: Reply): Promise<void> {
    const { metrics, logger } = this.#deps;
    const key = `${fn.name}.${fn.namespace}`;
    const fail = (code: string, message: string): void => {
      this.#open.delete(m.oid);
      reply({ t: 'out-error', oid: m.oid, code, message });
    };
    const scheme = m.scheme.toLowerCase();
    const where = splitAuthority(m.authority, scheme);
    if (where === undefined || (scheme !== 'http' && scheme !== 'https')) return fail('HTTP-request-URI-invalid', `cannot send to ${scheme}://${m.authority}`);
    const origin = `${scheme}://${m.authority}`;
    if (!isOutboundAllowed(fn.allowedOutboundHosts, scheme, where.host, where.port)) {
      metrics.outbound.inc({ fn: key, result: 'denied' });
      logger.warn({ fn: key, destination: origin, add: `allowedOutboundHosts: ["${origin}"]` }, 'function outbound request refused: destination not in allowedOutboundHosts');
      return fail('HTTP-request-denied', `${origin} is not in allowedOutboundHosts of function ${key}`);
    }
    metrics.outbound.inc({ fn: key, result: 'allowed' });
    const ex: Exchange = { request: undefined, early: [], responseInFlight: 0, response: undefined };
    this.#open.set(m.oid, ex);
    const headers: Record<string, string[]> = {};
    for (const [n, v] of m.headers) (headers[n] ??= []).push(v);
    headers.host = [m.authority];
    const options: http.RequestOptions = { method: m.method, path: m.pathWithQuery, headers, ...(m.timeoutMs === undefined ? {} : { timeout: m.timeoutMs }) };
    let req: http.ClientRequest;
    try {
      if (scheme === 'https') {
        req = https.request({ ...options, host: where.host, port: where.port, servername: where.host });
      } else {
        const l7 = this.#deps.l7();
        if (l7 === undefined) return fail('internal-error', 'the L7 path is not loaded');
        const target = await targetFor(this.#deps.state.current, fn, where.host, where.port);
        req = http.request({
          ...options,
          createConnection: () => {
            const [client, server] = duplexPair();
            l7.handleConnection(server, target);
            return client;
          },
        } as http.RequestOptions);
      }
    } catch (err) {
      return fail('DNS-error', (err as Error).message);
    }
    if (!this.#open.has(m.oid)) {
      req.destroy();
      return;
    }
    ex.request = req;
    req.on('response', (res) => {
      ex.response = res;
      const out: [string, string][] = [];
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) out.push([(res.rawHeaders[i] as string).toLowerCase(), res.rawHeaders[i + 1] as string]);
      reply({ t: 'out-head', oid: m.oid, status: res.statusCode ?? 502, headers: out });
      res.on('data', (chunk: Buffer) => {
        const copy = new Uint8Array(chunk);
        ex.responseInFlight += copy.length;
        reply({ t: 'out-body', oid: m.oid, chunk: copy }, [copy.buffer]);
        if (ex.responseInFlight >= STREAM_WINDOW_BYTES) res.pause();
      });
      res.on('end', () => {
        this.#open.delete(m.oid);
        reply({ t: 'out-end', oid: m.oid });
      });
      res.on('error', (err) => fail('internal-error', err.message));
    });
    req.on('timeout', () => req.destroy(new Error('timed out waiting for the response')));
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      fail(code === 'ECONNREFUSED' ? 'connection-refused' : code === 'ETIMEDOUT' ? 'connection-timeout' : 'internal-error', err.message);
    });
    for (const early of ex.early.splice(0)) this.#apply(ex, early, reply);
  }
}
