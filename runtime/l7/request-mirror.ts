/** Traffic mirroring (Istio `mirror`): a copy of a finished request goes to another backend, fire and forget, with `-shadow` appended to the authority; its response and failures never touch the original request. */
import { Agent, request } from 'undici';
import type { Logger } from '../log.js';
import type { UpstreamCluster } from './upstream-cluster.js';

/** Shadow requests must never pile up behind a slow mirror target. */
const MIRROR_TIMEOUT_MS = 10_000;
const MAX_IN_FLIGHT = 256;

export interface MirroredRequest {
  method: string;
  target: string;
  authority: string;
  headers: string[];
  body: Buffer | undefined;
}

export class RequestMirror {
  readonly #agent = new Agent({ keepAliveTimeout: 30_000, connections: 32 });
  readonly #logger: Logger;
  #inFlight = 0;
  sent = 0;
  dropped = 0;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  send(cluster: UpstreamCluster, req: MirroredRequest): void {
    const ep = cluster.pick(Date.now(), undefined);
    if (ep === undefined || this.#inFlight >= MAX_IN_FLIGHT) {
      this.dropped++;
      return;
    }
    const headers: Record<string, string> = {};
    const f = req.headers;
    for (let i = 0; i < f.length; i += 2) {
      const n = f[i]!;
      if (n === 'host' || n === 'connection' || n === 'keep-alive' || n === 'transfer-encoding' || n === 'content-length' || n === 'upgrade' || n === 'te') continue;
      headers[n] = headers[n] === undefined ? f[i + 1]! : `${headers[n]}, ${f[i + 1]!}`;
    }
    headers.host = `${req.authority.replace(/:\d+$/, '')}-shadow`;
    this.#inFlight++;
    this.sent++;
    const origin = ep.address.includes(':') ? `http://[${ep.address}]:${ep.port}` : `http://${ep.address}:${ep.port}`;
    request(`${origin}${req.target}`, { method: req.method as 'GET', headers, body: req.body, dispatcher: this.#agent, headersTimeout: MIRROR_TIMEOUT_MS, bodyTimeout: MIRROR_TIMEOUT_MS })
      .then((res) => res.body.dump())
      .catch((err: unknown) => {
        this.#logger.debug({ cluster: cluster.name, err }, 'mirror request failed');
      })
      .finally(() => {
        this.#inFlight--;
      });
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
