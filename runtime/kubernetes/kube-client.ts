/** HTTP/1.1 client for the API server on undici: one keep-alive Agent for every request and watch, TLS from the connection's CA, a bearer token re-read as it rotates. */
import { readFileSync, statSync } from 'node:fs';
import { Agent, request, type Dispatcher } from 'undici';
import { WeftError } from '../errors.js';
import type { KubeConnection } from './kube-config.js';

/** client-go re-reads a token file at most once a minute (transport/token_source.go); kubelet rotates at 80 % of its TTL. */
export const TOKEN_REFRESH_MS = 60_000;

export interface KubeResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

export interface KubeRequest {
  method?: 'GET' | 'POST';
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  signal?: AbortSignal;
  /** The Accept header (JSON unless given: lists and watches of built-in types ask for protobuf first). */
  accept?: string;
}

export class KubeClient {
  readonly server: string;
  readonly #conn: KubeConnection;
  readonly #agent: Agent;
  readonly #now: () => number;
  #token: string | undefined;
  #tokenReadAt = -Infinity;
  #tokenMtime = 0;

  constructor(conn: KubeConnection, opts: { now?: () => number } = {}) {
    this.#conn = conn;
    this.server = conn.server;
    this.#now = opts.now ?? Date.now;
    this.#agent = new Agent({
      connect: {
        ...(conn.ca === undefined ? {} : { ca: conn.ca }),
        ...(conn.clientCert === undefined ? {} : { cert: conn.clientCert }),
        ...(conn.clientKey === undefined ? {} : { key: conn.clientKey }),
        rejectUnauthorized: !conn.insecureSkipTlsVerify,
      },
      // Watches are quiet for minutes between bookmarks; the reflector runs its own inactivity timer instead.
      bodyTimeout: 0,
      headersTimeout: 30_000,
      keepAliveTimeout: 30_000,
    });
  }

  /** Where and how this client connects (a list thread opens its own connection with it). */
  get connection(): KubeConnection {
    return this.#conn;
  }

  /** The bearer token, re-read from its file once a minute or sooner when the file changed (or after a 401). */
  token(): string | undefined {
    if (this.#conn.tokenFile === undefined) return this.#conn.token;
    const now = this.#now();
    let mtime = this.#tokenMtime;
    try {
      mtime = statSync(this.#conn.tokenFile).mtimeMs;
    } catch {
      // A missing file mid-rotation (atomic symlink swap): keep the token we have.
    }
    if (this.#token === undefined || now - this.#tokenReadAt >= TOKEN_REFRESH_MS || mtime !== this.#tokenMtime) {
      try {
        this.#token = readFileSync(this.#conn.tokenFile, 'utf8').trim();
        this.#tokenReadAt = now;
        this.#tokenMtime = mtime;
      } catch (err) {
        if (this.#token === undefined) throw new WeftError('WEFT_ERR_CONFIG_READ', `cannot read the API server token from ${this.#conn.tokenFile}`, { cause: err });
      }
    }
    return this.#token;
  }

  /** A 401 means the token expired: the next request reads the file again. */
  invalidateToken(): void {
    this.#tokenReadAt = -Infinity;
  }

  async request(path: string, req: KubeRequest = {}): Promise<KubeResponse> {
    const url = new URL(path, this.server + '/');
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const token = this.token();
    const headers: Record<string, string> = { accept: req.accept ?? 'application/json', 'user-agent': 'weft/0.1 (kubernetes-source)' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (req.body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(url, {
      dispatcher: this.#agent,
      method: req.method ?? 'GET',
      headers,
      ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
      ...(req.signal === undefined ? {} : { signal: req.signal }),
    });
    return { statusCode: res.statusCode, headers: res.headers, body: res.body };
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
