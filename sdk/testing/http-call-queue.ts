/** HTTP callouts a plugin made under the emulator, held until the test answers, fails or lets them time out. */
import type { HeaderPairs } from '../../runtime/wasm/header-map-codec.js';
import type { HttpCallFn, HttpCallResponse } from '../../runtime/wasm/host-services.js';

export interface ResponseInit {
  status?: number;
  headers?: HeaderPairs | Record<string, string>;
  body?: string | Uint8Array;
  trailers?: HeaderPairs | Record<string, string>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function toPairs(h: HeaderPairs | Record<string, string> | undefined): HeaderPairs {
  if (h === undefined) return [];
  return Array.isArray(h) ? h : Object.entries(h);
}

type Settle = { resolve: (r: HttpCallResponse) => void; reject: (e: Error) => void };

export class PendingHttpCall {
  readonly cluster: string;
  readonly headers: HeaderPairs;
  readonly body: Uint8Array;
  readonly timeoutMs: number;
  #settle: Settle | undefined;

  constructor(cluster: string, headers: HeaderPairs, body: Uint8Array, timeoutMs: number, settle: Settle) {
    this.cluster = cluster;
    this.headers = headers;
    this.body = body;
    this.timeoutMs = timeoutMs;
    this.#settle = settle;
  }

  get settled(): boolean {
    return this.#settle === undefined;
  }

  header(name: string): string | undefined {
    return this.headers.find(([k]) => k === name)?.[1];
  }

  get bodyText(): string {
    return decoder.decode(this.body);
  }

  /** Answers the call; the plugin's onHttpCallResponse runs on a later microtask (await emulator.settle()). */
  respond(init: ResponseInit = {}): void {
    const s = this.#take();
    const headers: HeaderPairs = [[':status', String(init.status ?? 200)], ...toPairs(init.headers)];
    const body = typeof init.body === 'string' ? encoder.encode(init.body) : (init.body ?? new Uint8Array(0));
    s.resolve({ headers, body, trailers: toPairs(init.trailers) });
  }

  /** Fails the call as a connect error would (the plugin sees a failed response). */
  fail(message = 'connection refused'): void {
    this.#take().reject(new Error(message));
  }

  #take(): Settle {
    const s = this.#settle;
    if (s === undefined) throw new Error(`the http call to ${this.cluster} was already answered`);
    this.#settle = undefined;
    return s;
  }
}

/** An HttpCallFn that queues every call; the host's own timeout still applies to calls nobody answers. */
export class HttpCallQueue {
  readonly calls: PendingHttpCall[] = [];

  readonly send: HttpCallFn = (cluster, headers, body, _trailers, timeoutMs) =>
    new Promise<HttpCallResponse>((resolve, reject) => {
      this.calls.push(new PendingHttpCall(cluster, headers.map(([k, v]) => [k, v]), body, timeoutMs, { resolve, reject }));
    });

  /** Calls not yet answered. */
  get pending(): PendingHttpCall[] {
    return this.calls.filter((c) => !c.settled);
  }
}
