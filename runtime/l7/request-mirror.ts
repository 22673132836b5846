/** Traffic mirroring (Istio `mirror`): a copy of a finished request goes to another backend, fire and forget, with `-shadow` appended to the authority; its response and failures never touch the original request. HTTP/2 and gRPC copies go over h2c. */
import http2 from 'node:http2';
import { lazyUndici } from '../lazy-packages.js';
import { H2_HOP } from './h2-headers.js';
import type { Logger } from '../log.js';
import type { ConnectFn } from './http1-pool.js';
import type { UpstreamCluster } from './upstream-cluster.js';
import { UndiciAgents } from './undici-agents.js';

/** Shadow requests must never pile up behind a slow mirror target. */
const MIRROR_TIMEOUT_MS = 10_000;
const MAX_IN_FLIGHT = 256;

export interface MirroredRequest {
  method: string;
  target: string;
  authority: string;
  headers: string[];
  body: Buffer | undefined;
  /** Send over h2c (prior knowledge), for gRPC and HTTP/2 services; HTTP/1.1 otherwise. */
  http2?: boolean;
  /** The local workload the copy is sent for (L7Target.upstreamIdentity): HBONE destinations get it over HBONE. */
  identity?: string;
}

export class RequestMirror {
  readonly #agents: UndiciAgents;
  readonly #h2 = new Map<string, http2.ClientHttp2Session>();
  readonly #logger: Logger;
  readonly #connect: ConnectFn;
  #inFlight = 0;
  sent = 0;
  dropped = 0;

  constructor(logger: Logger, connect: ConnectFn) {
    this.#logger = logger;
    this.#connect = connect;
    this.#agents = new UndiciAgents(connect, { keepAliveTimeout: 30_000, connections: 32 });
  }

  send(cluster: UpstreamCluster, req: MirroredRequest): void {
    const ep = cluster.pick(Date.now(), undefined);
    if (ep === undefined || this.#inFlight >= MAX_IN_FLIGHT) {
      this.dropped++;
      return;
    }
    this.#inFlight++;
    this.sent++;
    const origin = ep.address.includes(':') ? `http://[${ep.address}]:${ep.port}` : `http://${ep.address}:${ep.port}`;
    const host = `${req.authority.replace(/:\d+$/, '')}-shadow`;
    if (req.http2 === true) return this.#sendH2(cluster, ep, origin, host, req);
    const headers: Record<string, string> = {};
    const f = req.headers;
    for (let i = 0; i < f.length; i += 2) {
      const n = f[i]!;
      if (n === 'host' || n === 'connection' || n === 'keep-alive' || n === 'transfer-encoding' || n === 'content-length' || n === 'upgrade' || n === 'te') continue;
      headers[n] = headers[n] === undefined ? f[i + 1]! : `${headers[n]}, ${f[i + 1]!}`;
    }
    headers.host = host;
    lazyUndici().request(`${origin}${req.target}`, { method: req.method as 'GET', headers, body: req.body, dispatcher: this.#agents.for(req.identity), headersTimeout: MIRROR_TIMEOUT_MS, bodyTimeout: MIRROR_TIMEOUT_MS })
      .then((res) => res.body.dump())
      .catch((err: unknown) => {
        this.#logger.debug({ cluster: cluster.name, err }, 'mirror request failed');
      })
      .finally(() => {
        this.#inFlight--;
      });
  }

  #sendH2(cluster: UpstreamCluster, ep: { address: string; port: number }, origin: string, authority: string, req: MirroredRequest): void {
    const headers: http2.OutgoingHttpHeaders = { ':method': req.method, ':path': req.target, ':authority': authority, ':scheme': 'http' };
    const f = req.headers;
    for (let i = 0; i < f.length; i += 2) {
      const n = f[i]!;
      // RFC 9113 §8.2.2: `te` may only say "trailers" (gRPC needs it); the body's length is known anew.
      if (H2_HOP.has(n) || n === 'content-length' || (n === 'te' && f[i + 1] !== 'trailers')) continue;
      const prev = headers[n];
      headers[n] = prev === undefined ? f[i + 1]! : Array.isArray(prev) ? [...prev, f[i + 1]!] : [String(prev), f[i + 1]!];
    }
    const fail = (err: unknown): void => this.#logger.debug({ cluster: cluster.name, err }, 'mirror request failed');
    const key = `${origin}|${req.identity ?? ''}`;
    let session = this.#h2.get(key);
    if (session === undefined || session.closed || session.destroyed) {
      const s = http2.connect(origin, { settings: { enablePush: false }, createConnection: () => this.#connect(ep.address, ep.port, req.identity) });
      s.on('error', fail);
      s.once('close', () => {
        if (this.#h2.get(key) === s) this.#h2.delete(key);
      });
      // Shadow traffic must never keep the process alive.
      s.unref();
      this.#h2.set(key, s);
      session = s;
    }
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: req.body === undefined });
    } catch (err) {
      this.#inFlight--;
      return fail(err);
    }
    stream.setTimeout(MIRROR_TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on('error', fail);
    stream.on('close', () => this.#inFlight--);
    stream.resume();
    if (req.body !== undefined) stream.end(req.body);
  }

  close(): Promise<void> {
    for (const s of this.#h2.values()) s.destroy();
    this.#h2.clear();
    return this.#agents.close();
  }
}
