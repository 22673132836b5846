/** Adapts the proxy-wasm host (runtime/wasm PluginHost) to the L7 filter chain: attached plugins ordered by Istio WasmPlugin phase and priority, one FilterChain per request, its actions mapped to continue / pause / local reply / reset. */
import { instanceNames } from '../state/plugin-instances.js';
import type { PluginConfig } from '../config/config-schema.js';
import type { FilterChain, FilterAction } from '../wasm/filter-chain.js';
import type { PluginHost } from '../wasm/plugin-host.js';
import type { ConnectionInfo, PeerInfo, StreamInfo } from '../wasm/stream-info.js';
import type { PropertyValue } from '../wasm/properties.js';
import type { HeaderList } from './header-list.js';
import type { BodyAccess, FilterRequestInfo, FilterStatus, L7Filter, L7FilterStream, LocalReply } from './l7-filter.js';
import type { PluginHostLike } from './l7-proxy.js';
import { L7_ERROR } from './local-reply.js';
import { wallNow } from './loop-clock.js';
import { RequestHeaderMap, ResponseHeaderMap } from './wasm-header-maps.js';
import { HOST, editedRequestLine, editedStatus, requestLineProblem, responsePairs, writeBackFields, type RequestLine } from './wasm-header-sync.js';

/** Istio WasmPlugin order: AUTHN, then AUTHZ, then STATS; unspecified plugins sit last, before the router. */
const PHASE_RANK: Record<PluginConfig['phase'], number> = { AUTHN: 0, AUTHZ: 1, STATS: 2, UNSPECIFIED_PHASE: 3 };

/** Sorts by phase, then by priority (higher first, as Istio), then by name for a stable order. */
export function orderPlugins(names: readonly string[], configs: readonly PluginConfig[]): string[] {
  const byName = new Map(configs.map((c) => [c.name, c]));
  return names
    .filter((n) => byName.has(n))
    .sort((a, b) => {
      const ca = byName.get(a)!;
      const cb = byName.get(b)!;
      return PHASE_RANK[ca.phase] - PHASE_RANK[cb.phase] || cb.priority - ca.priority || a.localeCompare(b);
    });
}

function toLocalReply(action: FilterAction): LocalReply | undefined {
  if (action.kind === 'localResponse') {
    const r = action.response;
    const code = r.headers.find((h) => h[0].toLowerCase() === 'x-weft-error')?.[1];
    return {
      status: r.status,
      // A pseudo-header in a local reply's map (`:status` from a copied response) is no field to send.
      headers: r.headers.filter((h) => h[0].charCodeAt(0) !== 0x3a && h[0].toLowerCase() !== 'x-weft-error' && h[0].toLowerCase() !== 'content-length'),
      body: Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength),
      ...(code === undefined ? {} : { code }),
      // Envoy's flags for filter-generated answers: RL for rate limiting, UAEX for authorization denials and failures.
      flag: action.failure !== undefined || r.status === 401 || r.status === 403 ? 'UAEX' : r.status === 429 ? 'RL' : '-',
    };
  }
  if (action.kind === 'reset') return { status: 0, reset: true, code: L7_ERROR.pluginFailed, flag: 'UAEX' };
  return undefined;
}

/** The filter status for an action; `onContinue` consumes a body handed back by the chain and may still answer locally. */
function statusOf(action: FilterAction, onContinue?: (body: Uint8Array | undefined) => LocalReply | undefined): FilterStatus {
  switch (action.kind) {
    case 'continue':
      return onContinue?.(action.body);
    case 'buffer':
      return undefined;
    case 'pause':
      return action.resume.then((a) => statusOf(a, onContinue));
    default:
      return toLocalReply(action);
  }
}

/** The filter standing in for attached plugins that are not running: every request is answered 503. */
export function notLoadedFilter(names: string[]): L7Filter {
  const reply: LocalReply = { status: 503, code: 'WEFT_ERR_PLUGIN_LOAD', flag: 'UAEX', body: `plugin ${names.join(', ')} is attached but not loaded\n` };
  return { name: `wasm-missing:${names.join(',')}`, start: () => ({ onRequestHeaders: () => reply }) };
}

/**
 * One request's view of the plugin chain, and the StreamInfo its plugins read. A class, so the per-request state is one
 * object whose methods live on the prototype (closures per request were a third of the adapter's allocations). The
 * chain is opened on first use.
 *
 * As StreamInfo it answers Envoy's attributes for the request: `source.*` is the downstream client, `destination.*`
 * where it connected to, and `upstream.*` the host the current attempt went to, read when a plugin asks (the upstream
 * is picked after the request callbacks ran). Getters on the prototype (a getter inside an object literal made every
 * request's info a slow object and cost the L7 Wasm bench ~4 µs of CPU per request in extra GC), and each attribute
 * group is built on first read: most plugins read none of them, and the request id is only drawn when asked for. The
 * stream is its own StreamInfo so a request makes one object here, not two.
 */
class WasmFilterStream implements L7FilterStream, StreamInfo {
  readonly #host: PluginHost;
  readonly #names: string[];
  readonly #info: FilterRequestInfo;
  readonly #body: BodyAccess;
  #chain: FilterChain | undefined;
  /** When the request started (ms since the epoch): request.time, request.duration; the I/O batch's clock read (loop-clock.ts), as the exchange's own start. */
  readonly #start = wallNow();
  #source: PeerInfo | undefined;
  #connection: ConnectionInfo | undefined;
  #request: NonNullable<StreamInfo['request']> | undefined;
  #properties: Record<string, PropertyValue> | undefined;
  /**
   * The header maps the chain holds (served from the exchange's lists, wasm-header-maps.ts), kept so edits made in
   * body callbacks reach the headers while they are still unsent (bodies reach plugins buffered, so the headers wait
   * for them, as Envoy allows). The request map is also the request line as the plugins last left it.
   */
  #reqMap: RequestHeaderMap | undefined;
  #resMap: ResponseHeaderMap | undefined;
  /**
   * responseHeadersHook when a plugin of the chain acts on the response, else undefined: a chain whose plugins export
   * no response callback and neither on_done nor on_log (authz, jwt-authn, fault-injection) has no response hook, so
   * the exchange runs no filter work on the response and makes no map for it (on_delete, which Envoy runs as the context
   * goes away, reads no headers). A field set in the constructor, not a subclass: a derived class runs the base's field
   * initializers as a separate call, ~20 ns per request.
   */
  onResponseHeaders: L7FilterStream['onResponseHeaders'];
  onRequestBody?: L7FilterStream['onRequestBody'];
  onResponseBody?: L7FilterStream['onResponseBody'];
  onRequestTrailers?: L7FilterStream['onRequestTrailers'];
  onResponseTrailers?: L7FilterStream['onResponseTrailers'];

  constructor(host: PluginHost, names: string[], info: FilterRequestInfo, body: BodyAccess, response: boolean) {
    this.onResponseHeaders = response ? responseHeadersHook : undefined;
    this.#host = host;
    this.#names = names;
    this.#info = info;
    this.#body = body;
  }

  #open(): FilterChain {
    return (this.#chain ??= this.#host.createStream(this.#names, this));
  }

  get source(): PeerInfo {
    const info = this.#info;
    const principal = info.sourceIdentity;
    return (this.#source ??= principal === undefined ? { address: info.sourceAddress, port: info.sourcePort ?? 0 } : { address: info.sourceAddress, port: info.sourcePort ?? 0, principal });
  }

  get destination(): PeerInfo | undefined {
    const info = this.#info;
    return info.destinationAddress === undefined ? undefined : { address: info.destinationAddress, port: info.destinationPort ?? 0 };
  }

  get connection(): ConnectionInfo {
    const principal = this.#info.sourceIdentity;
    // A peer identity exists only for connections that arrived over mTLS (HBONE); its URI SAN is that SPIFFE id.
    return (this.#connection ??= principal === undefined ? { mtls: false } : { mtls: true, uriSanPeerCertificate: principal });
  }

  get request(): NonNullable<StreamInfo['request']> {
    return (this.#request ??= { protocol: this.#info.protocol, id: this.#info.requestId, time: new Date(this.#start) });
  }

  get properties(): Record<string, PropertyValue> {
    const service = this.#info.destinationService;
    return (this.#properties ??= service === undefined ? {} : { 'destination.service.host': service });
  }

  get upstream(): PeerInfo | undefined {
    return this.#info.upstreamHost?.();
  }

  onRequestHeaders(headers: HeaderList, eos: boolean): FilterStatus {
    const info = this.#info;
    const map = (this.#reqMap = new RequestHeaderMap(headers, info.method, info.path, info.authority));
    // Written back when the chain continues, which may be after a pause: a plugin that calls out and then edits
    // headers (the http_auth_random shape) makes its edits on resume.
    return this.#status(this.#open().onRequestHeaders(map, eos), REQUEST_EDITS);
  }

  /** The response headers callback behind responseHeadersHook. */
  responseHeaders(status: number, headers: HeaderList, eos: boolean): FilterStatus {
    const map = (this.#resMap = new ResponseHeaderMap(headers, status));
    return this.#status(this.#open().onResponseHeaders(map, eos), RESPONSE_EDITS);
  }

  onDone(): void {
    this.#chain?.done();
  }

  /** Each body or trailer callback first shows the plugins the headers as they are now. */
  #refreshMaps(): void {
    const req = this.#reqMap;
    if (req !== undefined) req.reset(req.list);
    const res = this.#resMap;
    if (res !== undefined) res.reset(res.list, res.status);
  }

  requestBody(chunk: Buffer, eos: boolean): FilterStatus {
    this.#refreshMaps();
    return statusOf(this.#open().onRequestBody(chunk, eos), (b) => {
      if (b !== undefined && b !== chunk) this.#body.replaceRequestBody(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      return this.#requestEdits();
    });
  }

  responseBody(chunk: Buffer, eos: boolean): FilterStatus {
    this.#refreshMaps();
    return statusOf(this.#open().onResponseBody(chunk, eos), (b) => {
      if (b !== undefined && b !== chunk) this.#body.replaceResponseBody(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
      return this.#responseEdits();
    });
  }

  requestTrailers(trailers: HeaderList): FilterStatus {
    this.#refreshMaps();
    const pairs = responsePairs(trailers, undefined, []);
    return statusOf(this.#open().onRequestTrailers(pairs), () => {
      writeBackFields(trailers, pairs, undefined);
      return this.#requestEdits();
    });
  }

  responseTrailers(trailers: HeaderList): FilterStatus {
    this.#refreshMaps();
    const pairs = responsePairs(trailers, undefined, []);
    return statusOf(this.#open().onResponseTrailers(pairs), () => {
      writeBackFields(trailers, pairs, undefined);
      return this.#responseEdits();
    });
  }

  /** statusOf for the header callbacks, without a closure: `edits` says which map to write back on continue. */
  #status(action: FilterAction, edits: typeof REQUEST_EDITS | typeof RESPONSE_EDITS): FilterStatus {
    if (action.kind === 'continue') return edits === REQUEST_EDITS ? this.#requestEdits() : this.#responseEdits();
    return statusOf(action, () => (edits === REQUEST_EDITS ? this.#requestEdits() : this.#responseEdits()));
  }

  /** Applies the plugins' request map: fields, then the request line (Envoy clears the route cache on either). */
  #requestEdits(): LocalReply | undefined {
    const map = this.#reqMap;
    if (map === undefined) return undefined;
    const line: RequestLine = map;
    let changed: boolean;
    let edit: RequestLine | undefined;
    if (map.built) {
      const pairs = map.pairs();
      changed = writeBackFields(map.list, pairs, HOST);
      edit = editedRequestLine(pairs, line);
    } else {
      // Untouched, or only appended to and fields edited: the list takes the edits and the new fields, and an appended
      // `host` stands for :authority.
      if (map.appended.length === 0 && map.fieldEdits.length === 0) return undefined;
      changed = map.applyAppended();
      const host = map.appendedHost();
      edit = host === undefined || host === line.authority ? undefined : { method: line.method, path: line.path, authority: host };
    }
    if (edit === undefined) {
      if (changed) this.#body.clearRouteCache();
      return undefined;
    }
    const problem = requestLineProblem(edit, line);
    if (problem !== undefined) return { status: 500, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `a plugin set an invalid request line: ${problem}\n` };
    map.setLine(edit);
    this.#body.setRequestLine(edit.method, edit.path, edit.authority);
    return undefined;
  }

  /** Applies the plugins' response map: fields, then :status (Envoy sends what the filters left there). */
  #responseEdits(): LocalReply | undefined {
    const map = this.#resMap;
    if (map === undefined) return undefined;
    if (!map.built) {
      // A :status a plugin appended is a repeat (the first wins), so only fields can have changed.
      if (map.appended.length > 0 || map.fieldEdits.length > 0) map.applyAppended();
      return undefined;
    }
    const pairs = map.pairs();
    writeBackFields(map.list, pairs, undefined);
    const edit = editedStatus(pairs, map.status);
    if (edit === undefined) return undefined;
    const problem = typeof edit === 'string' ? edit : this.#body.setResponseStatus(edit);
    // Envoy answers 502 when a filter leaves the response without a valid :status (filter_removed_required_response_headers).
    if (problem !== undefined) return { status: 502, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `a plugin set an invalid :status: ${problem}\n` };
    map.status = edit as number;
    return undefined;
  }
}

const REQUEST_EDITS = 0;
const RESPONSE_EDITS = 1;

/** onResponseHeaders of a stream whose chain acts on the response: one function shared by every stream, not a closure each. */
function responseHeadersHook(this: WasmFilterStream, status: number, headers: HeaderList, eos: boolean): FilterStatus {
  return this.responseHeaders(status, headers, eos);
}

/** Callbacks after which a plugin may read the response headers. */
const RESPONSE_CALLBACKS = ['proxy_on_response_headers', 'proxy_on_response_body', 'proxy_on_response_trailers', 'proxy_on_done', 'proxy_on_log'];

/**
 * Builds the PluginHostLike the L7 proxy takes. `configs` returns the current `plugins:` section (for phase and
 * priority). Bodies reach plugins whole (buffered up to l7.maxBufferedBodyBytes) when a module exports the body
 * callback; header-only plugins never buffer.
 */
export function createWasmPlugins(host: PluginHost, configs: () => readonly PluginConfig[]): PluginHostLike {
  return {
    filtersFor(pluginNames, configOverrides) {
      // A `weft.dev/plugin-config.<plugin>` override selects that plugin's instance configured with it.
      const all = configs();
      const ordered = orderPlugins(instanceNames(pluginNames, configOverrides), all);
      // A plugin that is attached but not running (its load failed) fails closed unless it is FAIL_OPEN.
      const missing = ordered.filter((n) => !host.has(n) && all.find((c) => c.name === n)?.failStrategy !== 'FAIL_OPEN');
      if (missing.length > 0) return [notLoadedFilter(missing)];
      const names = ordered.filter((n) => host.has(n));
      return names.length === 0 ? [] : [wasmChainFilter(host, names)];
    },
  };
}

/** One L7 filter running the loaded proxy-wasm plugins `names` (already in chain order) as one FilterChain per request. */
export function wasmChainFilter(host: PluginHost, names: string[]): L7Filter {
  const exportsOf = (cb: string): boolean => names.some((n) => host.runtimeOf(n)?.compiled.exportNames.has(cb) === true);
  const requestBody = exportsOf('proxy_on_request_body');
  const responseBody = exportsOf('proxy_on_response_body');
  const requestTrailers = exportsOf('proxy_on_request_trailers');
  const responseTrailers = exportsOf('proxy_on_response_trailers');
  const response = RESPONSE_CALLBACKS.some(exportsOf);
  return {
    name: `wasm:${names.join(',')}`,
    bufferRequestBody: requestBody,
    bufferResponseBody: responseBody,
    start(info, body): L7FilterStream {
      const stream = new WasmFilterStream(host, names, info, body, response);
      // Body and trailer hooks exist only when a module has the callback: an absent hook keeps the proxy's
      // single-write fast path for small responses.
      if (requestBody) stream.onRequestBody = (chunk, eos) => stream.requestBody(chunk, eos);
      if (responseBody) stream.onResponseBody = (chunk, eos) => stream.responseBody(chunk, eos);
      if (requestTrailers) stream.onRequestTrailers = (trailers) => stream.requestTrailers(trailers);
      if (responseTrailers) stream.onResponseTrailers = (trailers) => stream.responseTrailers(trailers);
      return stream;
    },
  };
}
