/**
 * A test Kubernetes API server speaking the documented wire protocol over HTTP/1.1 (TLS optional): LIST with selectors and
 * limit/continue paging at one resourceVersion, WATCH as one JSON event per line with replay, BOOKMARKs, timeoutSeconds,
 * 410 as an ERROR event, and scriptable faults (status answers, a cut in mid-line, a silent half-open stream, a reset,
 * corrupt bytes). A client whose Accept names `application/vnd.kubernetes.protobuf` gets built-in types (and their errors)
 * in protobuf, watches as length-prefixed frames (fake-protobuf.ts); CRDs stay JSON, and JSON stays the default.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { randomUUID } from 'node:crypto';
import { FakeResourceStore, RESOURCE_TYPES, StoreError, apiVersionOf, type KubeObject, type ResourceType, type StoredEvent } from './fake-resource-store.js';
import { matchesLabels, parseLabelSelector, type LabelRequirement } from './label-selector.js';
import { matchesFields, parseFieldSelector, type FieldRequirement } from './field-selector.js';
import { PROTOBUF, acceptOf, encodeObject, encodeStatus, envelope, listParts, servesProtobuf, watchFrame } from './fake-protobuf.js';

export type Verb = 'list' | 'watch' | 'get' | 'create';

export type Fault =
  | { kind: 'status'; code: 401 | 403 | 429 | 500 | 503; retryAfterSeconds?: number }
  /** Watch only: after `afterEvents` events, half of the next line, then the connection closes. */
  | { kind: 'cutMidLine'; afterEvents: number }
  /** A watch goes silent after `afterEvents` events (no events, no bookmarks) with the socket open; any other request is never answered. */
  | { kind: 'halfOpen'; afterEvents: number }
  /** The connection is destroyed before any answer. */
  | { kind: 'reset' }
  /** A list page's body is bytes no decoder reads; a watch sends, after `afterEvents` events, one event of such bytes and goes on. */
  | { kind: 'corrupt'; afterEvents?: number };

export interface FaultRule {
  fault: Fault;
  resource?: string;
  verb?: Verb;
  /** Only list requests that carry a `continue` token (the second page on). */
  continued?: boolean;
  /** How many matching requests it hits (default 1). */
  times?: number;
}

export interface KubeApiServerFakeOptions {
  /** Serve TLS with this key pair; with `clientCa`, a client certificate signed by it also authenticates. */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Accepted bearer tokens (a test rotates them with setTokens). */
  tokens?: string[];
  bookmarkIntervalMs?: number;
  /** Continue tokens expire after this (etcd compaction, ~5 minutes upstream). */
  continueTtlMs?: number;
  /** The watch length when a client sends no timeoutSeconds (kube-apiserver: min-request-timeout × [1, 2)). */
  defaultWatchTimeoutSeconds?: number;
  host?: string;
  /** Serve built-in types as protobuf to clients that ask (default true); false acts as a server that only speaks JSON. */
  protobuf?: boolean;
}

export interface RequestRecord {
  method: string;
  verb: Verb | 'other';
  resource: string | undefined;
  query: Record<string, string>;
  status: number;
  /** The answer's encoding, as negotiated from the Accept header. */
  format: 'json' | 'protobuf';
}

interface Route {
  type: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
}

interface PagedList {
  rv: number;
  items: KubeObject[];
  created: number;
}

function status(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export class KubeApiServerFake {
  readonly store = new FakeResourceStore();
  readonly requests: RequestRecord[] = [];
  readonly #server: http.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #opts: Required<Omit<KubeApiServerFakeOptions, 'tls' | 'tokens'>>;
  readonly #tls: boolean;
  #tokens: Set<string>;
  readonly #faults: FaultRule[] = [];
  readonly #installedCrds = new Set<string>();
  readonly #pages = new Map<string, PagedList>();
  readonly #json = new WeakMap<KubeObject, string>();
  readonly #proto = new WeakMap<KubeObject, Buffer>();
  #watches = 0;
  #port = 0;

  constructor(opts: KubeApiServerFakeOptions = {}) {
    this.#opts = { bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 60_000, continueTtlMs: opts.continueTtlMs ?? 300_000, defaultWatchTimeoutSeconds: opts.defaultWatchTimeoutSeconds ?? 1800, host: opts.host ?? '127.0.0.1', protobuf: opts.protobuf ?? true };
    this.#tokens = new Set(opts.tokens ?? []);
    this.#tls = opts.tls !== undefined;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.#handle(req, res);
    this.#server = opts.tls === undefined
      ? http.createServer(handler)
      : https.createServer({ cert: opts.tls.cert, key: opts.tls.key, ...(opts.tls.clientCa === undefined ? {} : { ca: opts.tls.clientCa, requestCert: true, rejectUnauthorized: false }) }, handler);
    this.#server.on(opts.tls === undefined ? 'connection' : 'secureConnection', (s: net.Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, this.#opts.host, resolve));
    this.#port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    const host = this.#opts.host.includes(':') ? `[${this.#opts.host}]` : this.#opts.host;
    return `${this.#tls ? 'https' : 'http'}://${host}:${this.#port}`;
  }

  /** Watch streams open right now. */
  get openWatches(): number {
    return this.#watches;
  }

  setTokens(tokens: string[]): void {
    this.#tokens = new Set(tokens);
  }

  installCrd(resource: 'wasmplugins' | 'authorizationpolicies'): void {
    this.#installedCrds.add(resource);
  }

  inject(rule: FaultRule): void {
    this.#faults.push({ ...rule, times: rule.times ?? 1 });
  }

  /** Removes every fault not yet used up. */
  injectClear(): void {
    this.#faults.length = 0;
  }

  /** Ends every open connection (watches see their stream end without a final event), as an API server restart does. */
  dropConnections(): void {
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #takeFault(resource: string | undefined, verb: Verb, continued: boolean): Fault | undefined {
    const i = this.#faults.findIndex((f) => (f.resource === undefined || f.resource === resource) && (f.verb === undefined || f.verb === verb) && (f.continued === undefined || f.continued === continued));
    const rule = this.#faults[i];
    if (rule === undefined) return undefined;
    rule.times = (rule.times ?? 1) - 1;
    if (rule.times <= 0) this.#faults.splice(i, 1);
    return rule.fault;
  }

  #route(pathname: string): Route | 'notfound' {
    const parts = pathname.split('/').filter((p) => p !== '');
    let group = '';
    let version: string | undefined;
    let rest: string[];
    if (parts[0] === 'api') {
      version = parts[1];
      rest = parts.slice(2);
    } else if (parts[0] === 'apis') {
      group = parts[1] ?? '';
      version = parts[2];
      rest = parts.slice(3);
    } else return 'notfound';
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const type = RESOURCE_TYPES.find((t) => t.group === group && t.version === version && t.resource === rest[0]);
    if (type === undefined || rest.length > 2 || (type.crd && !this.#installedCrds.has(type.resource))) return 'notfound';
    if (namespace !== undefined && !type.namespaced) return 'notfound';
    return { type, namespace, name: rest[1] };
  }

  #authenticated(req: http.IncomingMessage): boolean {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ') === true && this.#tokens.has(auth.slice('Bearer '.length))) return true;
    return this.#tls && (req.socket as TLSSocket).authorized;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const route = this.#route(url.pathname);
    const resource = route === 'notfound' ? undefined : route.type.resource;
    const verb: Verb = req.method === 'POST' ? 'create' : route !== 'notfound' && route.name !== undefined ? 'get' : query.watch === 'true' || query.watch === '1' ? 'watch' : 'list';
    // Content negotiation: protobuf for built-in types when the client takes it, errors included (kube-apiserver
    // negotiates a Status as it does an object); JSON otherwise.
    const accept = acceptOf(req.headers.accept);
    const kind = route === 'notfound' ? undefined : route.type.kind;
    const apiVersion = route === 'notfound' ? '' : apiVersionOf(route.type);
    const proto = this.#opts.protobuf && accept.protobuf && kind !== undefined && servesProtobuf(kind);
    const record: RequestRecord = { method: req.method ?? '', verb, resource, query, status: 0, format: proto ? 'protobuf' : 'json' };
    this.requests.push(record);
    const sendRaw = (code: number, text: string, headers: Record<string, string> = {}): void => {
      record.status = code;
      res.writeHead(code, { 'content-type': 'application/json', ...headers }).end(text);
    };
    const send = (code: number, body: unknown, headers: Record<string, string> = {}): void => {
      if (!proto) return sendRaw(code, JSON.stringify(body), headers);
      const bytes = code >= 400 ? encodeStatus(body as Record<string, unknown>) : envelope(apiVersion, kind ?? '', this.#encode(kind ?? '', body as KubeObject));
      record.status = code;
      res.writeHead(code, { 'content-type': PROTOBUF, ...headers }).end(bytes);
    };
    if (!this.#authenticated(req)) return send(401, status(401, 'Unauthorized', 'Unauthorized'));
    const fault = this.#takeFault(resource, verb, query.continue !== undefined && query.continue !== '');
    if (fault?.kind === 'reset') {
      record.status = -1;
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'halfOpen' && verb !== 'watch') {
      record.status = -1;
      return;
    }
    if (fault?.kind === 'status') {
      const reason = { 401: 'Unauthorized', 403: 'Forbidden', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable' }[fault.code];
      const message = fault.code === 403 ? `${resource ?? 'resource'} is forbidden: User "system:serviceaccount:weft-system:weft" cannot ${verb} resource "${resource ?? ''}" at the cluster scope` : reason;
      return send(fault.code, status(fault.code, reason, message), fault.retryAfterSeconds === undefined ? {} : { 'retry-after': String(fault.retryAfterSeconds) });
    }
    if (route === 'notfound') return send(404, status(404, 'NotFound', 'the server could not find the requested resource'));
    if (!proto && !accept.json) return send(406, status(406, 'NotAcceptable', `only the following media types are accepted: application/json (asked: ${req.headers.accept ?? ''})`));
    if (verb === 'create') return this.#create(req, route, send);
    if (verb === 'get') {
      const obj = this.store.get(route.type.resource, route.namespace, route.name ?? '');
      return obj === undefined ? send(404, status(404, 'NotFound', `${route.type.resource} "${route.name}" not found`)) : send(200, obj);
    }
    let labels: LabelRequirement[];
    let fields: FieldRequirement[];
    try {
      labels = parseLabelSelector(query.labelSelector ?? '');
      fields = parseFieldSelector(route.type.resource, query.fieldSelector ?? '');
    } catch (err) {
      return send(400, status(400, 'BadRequest', (err as Error).message));
    }
    const matches = (o: KubeObject | undefined): boolean =>
      o !== undefined && (route.namespace === undefined || o.metadata.namespace === route.namespace) && matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o);
    if (verb === 'watch') return this.#watch(req, res, record, route.type, query, matches, fault, proto);
    if (fault?.kind === 'corrupt') {
      record.status = 200;
      res.writeHead(200, { 'content-type': proto ? PROTOBUF : 'application/json' }).end(proto ? Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12]) : '{"kind":"PodList","items":[{"metadata":');
      return;
    }
    return this.#list(route.type, query, matches, send, proto, (body) => {
      record.status = 200;
      if (typeof body === 'string') return void res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      // The page's parts (cached items among them) go out as one corked write, never copied into one buffer here.
      res.writeHead(200, { 'content-type': PROTOBUF, 'content-length': String(body.reduce((n, b) => n + b.length, 0)) });
      res.cork();
      for (const part of body) res.write(part);
      res.end();
    });
  }

  #create(req: http.IncomingMessage, route: Route, send: (code: number, body: unknown) => void): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: KubeObject;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as KubeObject;
      } catch (err) {
        return send(400, status(400, 'BadRequest', `invalid JSON: ${(err as Error).message}`));
      }
      const metadata = { ...body.metadata, name: body.metadata?.name ?? `${typeof body.metadata?.generateName === 'string' ? body.metadata.generateName : 'obj-'}${randomUUID().slice(0, 5)}`, ...(route.namespace === undefined ? {} : { namespace: route.namespace }) };
      try {
        send(201, this.store.create(route.type.resource, { ...body, metadata }));
      } catch (err) {
        if (err instanceof StoreError) send(err.code, status(err.code, err.reason, err.message));
        else throw err;
      }
    });
  }

  /** A page goes out as protobuf when `proto` (the client takes it), else as JSON. */
  #list(type: ResourceType, query: Record<string, string>, matches: (o: KubeObject) => boolean, send: (code: number, body: unknown) => void, proto: boolean, sendPage: (body: string | Buffer[]) => void): void {
    const limit = query.limit === undefined ? 0 : Number(query.limit);
    let page: PagedList;
    let offset = 0;
    let id: string;
    if (query.continue !== undefined && query.continue !== '') {
      let token: { id: string; offset: number };
      try {
        token = JSON.parse(Buffer.from(query.continue, 'base64url').toString('utf8')) as { id: string; offset: number };
      } catch {
        return send(400, status(400, 'BadRequest', 'continue key is not valid: incorrect encoded start resourceVersion'));
      }
      const found = this.#pages.get(token.id);
      if (found === undefined || Date.now() - found.created > this.#opts.continueTtlMs || found.rv < this.store.compactedRv) {
        this.#pages.delete(token.id);
        return send(410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.'));
      }
      page = found;
      offset = token.offset;
      id = token.id;
    } else {
      page = { rv: this.store.resourceVersion, items: this.store.list(type.resource).filter(matches), created: Date.now() };
      id = randomUUID();
    }
    const end = limit > 0 ? Math.min(offset + limit, page.items.length) : page.items.length;
    const metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number } = { resourceVersion: String(page.rv) };
    if (end < page.items.length) {
      this.#pages.set(id, page);
      metadata.continue = Buffer.from(JSON.stringify({ id, offset: end })).toString('base64url');
      metadata.remainingItemCount = page.items.length - end;
    } else this.#pages.delete(id);
    // Items are serialized once per object version: the scale mode lists 150,000 pods.
    const slice = page.items.slice(offset, end);
    if (proto) return sendPage(listParts(apiVersionOf(type), type.kind, metadata, slice.map((o) => this.#encode(type.kind, o))));
    const head = JSON.stringify({ kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata });
    sendPage(`${head.slice(0, -1)},"items":[${slice.map((o) => this.#serialize(o)).join(',')}]}`);
  }

  /** Serializes every stored object now (JSON, and protobuf for built-in types), as an API server's watch cache holds them ready (scale benchmarks time the client, not this). */
  warmSerializationCache(formats: readonly ('json' | 'protobuf')[] = ['json', 'protobuf']): void {
    for (const type of RESOURCE_TYPES) {
      for (const o of this.store.list(type.resource)) {
        if (formats.includes('json')) this.#serialize(o);
        if (formats.includes('protobuf') && servesProtobuf(type.kind)) this.#encode(type.kind, o);
      }
    }
  }

  /** An object's protobuf message (no envelope), once per object version. */
  #encode(kind: string, o: KubeObject): Buffer {
    let b = this.#proto.get(o);
    if (b === undefined) this.#proto.set(o, (b = encodeObject(kind, o)));
    return b;
  }

  #serialize(o: KubeObject): string {
    let s = this.#json.get(o);
    if (s === undefined) this.#json.set(o, (s = JSON.stringify(o)));
    return s;
  }

  /** A watch: one JSON event per line, or with `proto` one length-prefixed WatchEvent frame per event. */
  #watch(req: http.IncomingMessage, res: http.ServerResponse, record: RequestRecord, type: ResourceType, query: Record<string, string>, matches: (o: KubeObject | undefined) => boolean, fault: Fault | undefined, proto: boolean): void {
    record.status = 200;
    res.writeHead(200, { 'content-type': proto ? `${PROTOBUF};stream=watch` : 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const rvParam = query.resourceVersion ?? '';
    const bookmarks = query.allowWatchBookmarks === 'true' || query.allowWatchBookmarks === '1';
    let sent = 0;
    let silent = false;
    let ended = false;
    const timers: NodeJS.Timeout[] = [];
    let unsubscribe = (): void => undefined;
    this.#watches++;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      this.#watches--;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
    };
    res.on('close', finish);
    let corrupted = false;
    // One event as it goes on the wire: a JSON line, or a frame.
    const write = (unit: string | Buffer): void => {
      if (ended || silent) return;
      if (fault?.kind === 'cutMidLine' && sent === fault.afterEvents) {
        res.write(typeof unit === 'string' ? unit.slice(0, Math.max(1, unit.length >> 1)) : unit.subarray(0, Math.max(1, unit.length >> 1)));
        finish();
        // The server's side of a dropped connection: what was written reaches the client, then the socket goes away.
        const socket = res.socket;
        setTimeout(() => socket?.destroy(), 50);
        return;
      }
      if (fault?.kind === 'corrupt' && sent === (fault.afterEvents ?? 0) && !corrupted) {
        corrupted = true;
        // A frame of the right length whose WatchEvent holds an object of bytes no decoder reads; in JSON, a broken line.
        res.write(proto ? Buffer.from([0, 0, 0, 12, 0x0a, 0x05, ...Buffer.from('ADDED'), 0x12, 0x03, 0xff, 0xff, 0xff]) : '{"type":"ADDED","object":}\n');
      }
      res.write(unit);
      sent++;
      if (fault?.kind === 'halfOpen' && sent >= fault.afterEvents) silent = true;
    };
    // `stored`: the object is the store's current version (its encoding is cached).
    const event = (t: string, object: KubeObject | Record<string, unknown>, stored = false): void => {
      if (proto) {
        const bytes = t === 'ERROR' ? encodeStatus(object) : envelope(apiVersionOf(type), type.kind, stored ? this.#encode(type.kind, object as KubeObject) : encodeObject(type.kind, object));
        return write(watchFrame(t, bytes));
      }
      write(`{"type":"${t}","object":${stored ? this.#serialize(object as KubeObject) : JSON.stringify(object)}}\n`);
    };
    const bookmark = (): void => event('BOOKMARK', { kind: type.kind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.store.resourceVersion) } });
    const deliver = (e: StoredEvent): void => {
      if (e.resource !== type.resource) return;
      const now = e.type !== 'DELETED' && matches(e.object);
      const before = e.previous !== undefined && matches(e.previous);
      if (e.type === 'ADDED' && now) event('ADDED', e.object, true);
      else if (e.type === 'MODIFIED' && now) event(before ? 'MODIFIED' : 'ADDED', e.object, true);
      else if (e.type === 'MODIFIED' && before && e.previous !== undefined) {
        // Leaving the selector: the cacher sends DELETED with the previous state at the new resourceVersion.
        event('DELETED', { ...e.previous, metadata: { ...e.previous.metadata, resourceVersion: String(e.rv) } });
      } else if (e.type === 'DELETED' && before) event('DELETED', e.object, true);
    };
    if (fault?.kind === 'halfOpen' && fault.afterEvents === 0) silent = true;
    if (rvParam === '' || rvParam === '0') {
      for (const o of this.store.list(type.resource)) if (matches(o)) event('ADDED', o, true);
    } else {
      const replay = this.store.eventsAfter(Number(rvParam));
      if (replay === undefined || !/^\d+$/.test(rvParam)) {
        event('ERROR', status(410, 'Expired', `too old resource version: ${rvParam} (${this.store.compactedRv})`));
        finish();
        res.end();
        return;
      }
      for (const e of replay) deliver(e);
    }
    if (ended) return;
    unsubscribe = this.store.subscribe(deliver);
    const timeoutMs = Number(query.timeoutSeconds ?? this.#opts.defaultWatchTimeoutSeconds) * 1000;
    if (bookmarks) {
      const every = (): void => {
        bookmark();
        timers.push(setTimeout(every, this.#opts.bookmarkIntervalMs));
      };
      timers.push(setTimeout(every, this.#opts.bookmarkIntervalMs));
    }
    timers.push(
      setTimeout(() => {
        // The cacher sends a last bookmark just before the deadline, so the client resumes without a relist.
        if (bookmarks) bookmark();
        finish();
        if (!silent) res.end();
      }, timeoutMs),
    );
    req.on('close', finish);
  }
}
