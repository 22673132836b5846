/**
 * One resource's list/watch loop with client-go's reflector rules: paged lists (limit=500), watches with bookmarks and a
 * random timeoutSeconds, a relist on 410, backoff with jitter, an inactivity timer for half-open streams, a token re-read
 * on 401, Retry-After on 429, and a missing optional resource (CRD) logged once. It never stops until its signal aborts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../log.js';
import type { KubeClient, KubeResponse } from './kube-client.js';
import { listPages, type ListPage } from './kube-list-pager.js';
import { listOffThread } from './kube-list-thread.js';
import { adoptStripped } from './kube-objects.js';
import { PROTOBUF_ACCEPT, WatchFrameReader, decodeWatchEvent, isProtobuf, type StatusFields } from './kube-protobuf.js';
import { PROTO_BY_RESOURCE, type ProtoCodec } from './kube-protobuf-objects.js';
import type { KubeMetrics } from './kube-metrics.js';
import { KubeStatusError, WatchStalledError, errorReason } from './kube-status-error.js';
import type { WatchedResource } from './watched-resources.js';

const log = createLogger('kubernetes');

export interface RawObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}

/** What the reflector keeps of an object: stripped on arrival, with the metadata it diffs on. */
export interface Stripped {
  name: string;
  namespace: string | undefined;
  resourceVersion: string;
}

export interface ReflectorHandler<T extends Stripped> {
  upsert(resource: string, key: string, obj: T): void;
  remove(resource: string, key: string, obj: T): void;
  /** The resource's first complete list (or its absence, for an optional resource) has been applied. */
  synced(resource: string): void;
}

export interface ReflectorTuning {
  pageSize: number;
  /** Watches ask the server to end them after a random time in [min, max] seconds (client-go: 300–600). */
  watchTimeoutSeconds: readonly [number, number];
  /** A stream with no byte for this long is replaced (≈ 2 × the apiserver's 60 s bookmark interval). */
  inactivityMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** A watch that ran this long before failing resets the backoff. */
  backoffResetMs: number;
  /** How often a missing optional resource is looked for again (quietly). */
  absentRecheckMs: number;
  random: () => number;
  /** A list with at least this many items after its first page is read on in a worker thread (kube-list-thread.ts). */
  offThreadAbove: number;
}

export const DEFAULT_TUNING: ReflectorTuning = {
  pageSize: 500,
  watchTimeoutSeconds: [300, 600],
  inactivityMs: 150_000,
  backoffInitialMs: 800,
  backoffMaxMs: 30_000,
  backoffResetMs: 120_000,
  absentRecheckMs: 300_000,
  random: Math.random,
  offThreadAbove: 5_000,
};

export function resourcePath(r: Pick<WatchedResource, 'group' | 'version' | 'resource'>): string {
  return r.group === '' ? `/api/${r.version}/${r.resource}` : `/apis/${r.group}/${r.version}/${r.resource}`;
}

export function keyOf(o: { name: string; namespace: string | undefined }): string {
  return o.namespace === undefined ? o.name : `${o.namespace}/${o.name}`;
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: RawObject & { code?: number; reason?: string; message?: string };
}

const EVENT_TYPES: ReadonlySet<string> = new Set(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']);

/** A watch event as either wire format gives it: the object already cut (none for BOOKMARK and ERROR). */
interface Event<T> {
  type: string;
  object: T | undefined;
  resourceVersion: string | undefined;
  status: StatusFields | undefined;
}

export class KubeReflector<T extends Stripped> {
  readonly resource: WatchedResource;
  readonly #client: KubeClient;
  readonly #strip: (raw: RawObject) => T;
  readonly #handler: ReflectorHandler<T>;
  readonly #metrics: KubeMetrics;
  readonly #tuning: ReflectorTuning;
  readonly #items = new Map<string, T>();
  readonly #path: string;
  #rv: string | undefined;
  #synced = false;
  #absentLogged = false;
  readonly #offThread: boolean;
  readonly #proto: ProtoCodec | undefined;

  /**
   * `listOffThread`: big lists may be parsed in a worker thread, with STRIP_BY_RESOURCE's function for the resource (which
   * `strip` must be). Built-in resources are asked for as protobuf (PROTO_BY_RESOURCE, which cuts them as `strip` does)
   * unless `protobuf` is false; a server that answers JSON is read as JSON.
   */
  constructor(opts: { client: KubeClient; resource: WatchedResource; strip: (raw: RawObject) => T; handler: ReflectorHandler<T>; metrics: KubeMetrics; tuning?: Partial<ReflectorTuning>; listOffThread?: boolean; protobuf?: boolean }) {
    this.resource = opts.resource;
    this.#client = opts.client;
    this.#strip = opts.strip;
    this.#handler = opts.handler;
    this.#metrics = opts.metrics;
    this.#tuning = { ...DEFAULT_TUNING, ...opts.tuning };
    this.#path = resourcePath(opts.resource);
    this.#offThread = opts.listOffThread === true;
    this.#proto = opts.protobuf === false ? undefined : PROTO_BY_RESOURCE[opts.resource.resource];
  }

  get items(): ReadonlyMap<string, T> {
    return this.#items;
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** The last resourceVersion seen (list, event or bookmark); undefined means the next step is a full list. */
  get resourceVersion(): string | undefined {
    return this.#rv;
  }

  async run(signal: AbortSignal): Promise<void> {
    const name = this.resource.resource;
    let attempt = 0;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        if (this.#rv === undefined) await this.#list(signal);
        const events = await this.#watch(signal);
        // A server that closes watches at once must not turn this loop into a hot one.
        if (events === 0 && Date.now() - started < 1000) throw Object.assign(new Error('watch closed at once'), { closedEarly: true });
        attempt = 0;
        continue;
      } catch (err) {
        if (signal.aborted) break;
        if (Date.now() - started >= this.#tuning.backoffResetMs) attempt = 0;
        const reason = (err as { closedEarly?: boolean }).closedEarly === true ? 'closed-early' : errorReason(err);
        if (reason === 'absent' && this.resource.optional) {
          this.#markAbsent();
          if (!(await this.#pause(this.#tuning.absentRecheckMs, signal))) break;
          continue;
        }
        this.#metrics.errors.inc({ resource: name, reason });
        if (reason === 'gone') {
          // 410: the RV is older than the server's history; only a fresh list gives a consistent view (no backoff).
          log.info({ resource: name, resourceVersion: this.#rv }, 'resource version expired; relisting');
          this.#rv = undefined;
          continue;
        }
        let delay = this.#backoff(attempt++);
        if (reason === 'unauthorized') {
          this.#client.invalidateToken();
          if (attempt === 1) delay = 0;
        }
        if (err instanceof KubeStatusError && err.retryAfterMs !== undefined) delay = err.retryAfterMs;
        log.warn({ resource: name, reason, error: (err as Error).message, retryInMs: Math.round(delay) }, 'list/watch failed; retrying');
        if (!(await this.#pause(delay, signal))) break;
      }
    }
    this.#metrics.watchConnected.set({ resource: name }, 0);
  }

  #backoff(attempt: number): number {
    const base = Math.min(this.#tuning.backoffMaxMs, this.#tuning.backoffInitialMs * 2 ** Math.min(attempt, 30));
    // client-go's jitter factor 1.0: a delay in [base, 2 × base), capped.
    return Math.min(this.#tuning.backoffMaxMs, base * (1 + this.#tuning.random()));
  }

  async #pause(ms: number, signal: AbortSignal): Promise<boolean> {
    try {
      await sleep(ms, undefined, { signal });
      return true;
    } catch {
      return false;
    }
  }

  #markAbsent(): void {
    const name = this.resource.resource;
    this.#metrics.absent.set({ resource: name }, 1);
    if (!this.#absentLogged) {
      this.#absentLogged = true;
      log.warn({ resource: `${name}.${this.resource.group}` }, 'resource is not served by this cluster (CRD not installed); looking again every few minutes without logging');
    }
    // An absent CRD means no such objects: what was known of it (if it was deleted) goes away.
    for (const [key, obj] of this.#items) this.#handler.remove(name, key, obj);
    this.#items.clear();
    this.#rv = undefined;
    this.#setSynced();
  }

  #setSynced(): void {
    this.#metrics.objects.set({ resource: this.resource.resource }, this.#items.size);
    if (this.#synced) return;
    this.#synced = true;
    this.#metrics.synced.set({ resource: this.resource.resource }, 1);
    this.#handler.synced(this.resource.resource);
  }

  async #fail(res: KubeResponse, verb: string): Promise<never> {
    this.#metrics.requests.inc({ resource: this.resource.resource, verb, code: String(res.statusCode) });
    throw await KubeStatusError.fromResponse(res, `${verb} ${this.#path}`);
  }

  async #list(signal: AbortSignal): Promise<void> {
    const name = this.resource.resource;
    this.#metrics.relists.inc({ resource: name });
    const fresh = new Map<string, T>();
    // Nothing held yet (the first list): objects go to the handler page by page, so it can start on them while the rest
    // of the list arrives. A list that fails midway leaves them held, and the next list's diff removes what is gone.
    const streaming = this.#items.size === 0;
    const add = (obj: T): void => {
      const key = keyOf(obj);
      fresh.set(key, obj);
      if (!streaming) return;
      this.#items.set(key, obj);
      this.#handler.upsert(name, key, obj);
    };
    let rv = '';
    const onStatus = (code: number): void => this.#metrics.requests.inc({ resource: name, verb: 'list', code: String(code) });
    const take = (page: ListPage<T>): void => {
      rv = page.resourceVersion ?? rv;
      this.#metrics.lastEvent.set({ resource: name }, Date.now() / 1000);
    };
    // A big list (150,000 pods) is read on in a worker thread after its first page: parsing is most of its cost.
    const offThread = this.#offThread && this.#tuning.offThreadAbove < Infinity;
    let rest: string | undefined;
    const pages = listPages(this.#client, {
      path: this.#path,
      strip: this.#strip,
      proto: this.#proto,
      pageSize: this.#tuning.pageSize,
      labelSelector: this.resource.labelSelector,
      signal,
      onStatus,
      handOff: (head) => offThread && (head.remainingItemCount ?? 0) >= this.#tuning.offThreadAbove,
    });
    for await (const page of pages) {
      for (const obj of page.items) add(obj);
      take(page);
      rest = page.continue;
    }
    if (rest !== undefined) {
      const job = { connection: this.#client.connection, path: this.#path, resource: name, protobuf: this.#proto !== undefined, pageSize: this.#tuning.pageSize, labelSelector: this.resource.labelSelector, continue: rest };
      for await (const page of listOffThread(job, signal, onStatus)) {
        for (const stripped of page.items) add(adoptStripped(name, stripped) as T);
        take(page as ListPage<T>);
      }
    }
    if (this.#absentLogged && this.#metrics.absent !== undefined) {
      log.info({ resource: name }, 'resource is now served by this cluster');
      this.#absentLogged = false;
    }
    this.#metrics.absent.set({ resource: name }, 0);
    // A relist is a diff: gone objects are removed, changed ones updated (by resourceVersion), the rest left alone.
    for (const [key, old] of this.#items) {
      if (!fresh.has(key)) {
        this.#items.delete(key);
        this.#handler.remove(name, key, old);
      }
    }
    for (const [key, obj] of fresh) {
      if (streaming || this.#items.get(key)?.resourceVersion === obj.resourceVersion) continue;
      this.#items.set(key, obj);
      this.#handler.upsert(name, key, obj);
    }
    this.#rv = rv;
    this.#setSynced();
  }

  /** One watch stream from the current RV; resolves with the event count when the server ends it cleanly. */
  async #watch(signal: AbortSignal): Promise<number> {
    const name = this.resource.resource;
    const [min, max] = this.#tuning.watchTimeoutSeconds;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const inactivity = setTimeout(() => controller.abort(new WatchStalledError(`no data on the ${name} watch for ${this.#tuning.inactivityMs} ms`)), this.#tuning.inactivityMs);
    let events = 0;
    try {
      const res = await this.#client.request(this.#path, {
        query: { watch: 1, resourceVersion: this.#rv, labelSelector: this.resource.labelSelector, allowWatchBookmarks: true, timeoutSeconds: Math.floor(min + this.#tuning.random() * (max - min + 1)) },
        signal: controller.signal,
        ...(this.#proto === undefined ? {} : { accept: PROTOBUF_ACCEPT }),
      });
      if (res.statusCode !== 200) await this.#fail(res, 'watch');
      this.#metrics.requests.inc({ resource: name, verb: 'watch', code: '200' });
      this.#metrics.watchConnected.set({ resource: name }, 1);
      const proto = this.#proto !== undefined && isProtobuf(res.headers) ? this.#proto : undefined;
      const what = `watch ${this.#path}`;
      // A clean end with part of an event left is a cut stream: that event was not applied and is replayed from the RV.
      const cut = (): Error => new Error('watch stream ended in the middle of an event');
      if (proto !== undefined) {
        const frames = new WatchFrameReader();
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          inactivity.refresh();
          for (const frame of frames.push(chunk, what)) {
            this.#event(decodeWatchEvent(frame, proto, what) as Event<T>);
            events++;
          }
        }
        if (frames.pending > 0) throw cut();
        return events;
      }
      res.body.setEncoding('utf8');
      let buffered = '';
      for await (const chunk of res.body as AsyncIterable<string>) {
        inactivity.refresh();
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() === '') continue;
          this.#event(this.#fromJson(JSON.parse(line) as WatchEvent));
          events++;
        }
      }
      if (buffered.trim() !== '') throw cut();
      return events;
    } catch (err) {
      if (controller.signal.aborted && controller.signal.reason instanceof WatchStalledError) throw controller.signal.reason;
      throw err;
    } finally {
      clearTimeout(inactivity);
      signal.removeEventListener('abort', onAbort);
      this.#metrics.watchConnected.set({ resource: name }, 0);
    }
  }

  #fromJson(e: WatchEvent): Event<T> {
    if (e.type === 'ERROR') return { type: e.type, object: undefined, resourceVersion: undefined, status: { code: e.object.code ?? 500, reason: e.object.reason ?? '', message: e.object.message ?? '' } };
    const rv = e.object.metadata?.resourceVersion;
    return { type: e.type, object: e.type === 'BOOKMARK' ? undefined : this.#strip(e.object), resourceVersion: rv, status: undefined };
  }

  #event(e: Event<T>): void {
    const name = this.resource.resource;
    // Checked before counting: a type off the wire must not become a metric label.
    if (!EVENT_TYPES.has(e.type) || (e.object === undefined && e.type !== 'ERROR' && e.type !== 'BOOKMARK')) throw new SyntaxError(`watch ${this.#path}: an event of unknown type "${e.type.slice(0, 40)}"`);
    this.#metrics.watchEvents.inc({ resource: name, type: e.type });
    this.#metrics.lastEvent.set({ resource: name }, Date.now() / 1000);
    if (e.type === 'ERROR') {
      const code = e.status?.code || 500;
      throw new KubeStatusError(code, e.status?.reason ?? '', `watch ${this.#path}: ERROR event ${code} ${e.status?.reason ?? ''} ${e.status?.message ?? ''}`.trim());
    }
    const rv = e.resourceVersion;
    if (e.type === 'BOOKMARK') {
      if (rv !== undefined) this.#rv = rv;
      return;
    }
    const obj = e.object as T;
    const key = keyOf(obj);
    if (e.type === 'DELETED') {
      const old = this.#items.get(key);
      if (old !== undefined) {
        this.#items.delete(key);
        this.#handler.remove(name, key, old);
      }
    } else {
      this.#items.set(key, obj);
      this.#handler.upsert(name, key, obj);
    }
    if (rv !== undefined) this.#rv = rv;
    this.#metrics.objects.set({ resource: name }, this.#items.size);
  }
}
