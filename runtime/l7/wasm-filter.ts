/** Adapts the proxy-wasm host (runtime/wasm PluginHost) to the L7 filter chain: attached plugins ordered by Istio WasmPlugin phase and priority, one FilterChain per request, its actions mapped to continue / pause / local reply / reset. */
import { instanceNames } from '../state/plugin-instances.js';
import type { PluginConfig } from '../config/config-schema.js';
import type { FilterChain, FilterAction } from '../wasm/filter-chain.js';
import type { HeaderPairs } from '../wasm/header-map-codec.js';
import type { PluginHost } from '../wasm/plugin-host.js';
import type { ConnectionInfo, PeerInfo, StreamInfo } from '../wasm/stream-info.js';
import type { PropertyValue } from '../wasm/properties.js';
import type { HeaderList } from './header-list.js';
import type { FilterRequestInfo, FilterStatus, L7Filter, L7FilterStream, LocalReply } from './l7-filter.js';
import type { PluginHostLike } from './l7-proxy.js';
import { L7_ERROR } from './local-reply.js';
import { HOST, editedRequestLine, requestLineProblem, requestPairs, responsePairs, writeBackFields, type RequestLine } from './wasm-header-sync.js';

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
 * Envoy's attributes for the request: `source.*` is the downstream client, `destination.*` where it connected to, and
 * `upstream.*` the host the current attempt went to, read when a plugin asks (the upstream is picked after the request
 * callbacks ran). A class, so the getter lives on the prototype: a getter inside an object literal made every
 * request's info a slow object and cost the L7 Wasm bench ~4 µs of CPU per request in extra GC.
 */
class RequestStreamInfo implements StreamInfo {
  readonly source: PeerInfo;
  readonly destination: PeerInfo | undefined;
  readonly connection: ConnectionInfo;
  readonly request: NonNullable<StreamInfo['request']>;
  readonly properties: Record<string, PropertyValue>;
  readonly #upstreamHost: FilterRequestInfo['upstreamHost'];

  constructor(info: FilterRequestInfo) {
    const principal = info.sourceIdentity;
    this.source = principal === undefined ? { address: info.sourceAddress, port: info.sourcePort ?? 0 } : { address: info.sourceAddress, port: info.sourcePort ?? 0, principal };
    this.destination = info.destinationAddress === undefined ? undefined : { address: info.destinationAddress, port: info.destinationPort ?? 0 };
    // A peer identity exists only for connections that arrived over mTLS (HBONE); its URI SAN is that SPIFFE id.
    this.connection = principal === undefined ? { mtls: false } : { mtls: true, uriSanPeerCertificate: principal };
    this.request = { protocol: info.protocol, id: info.requestId, time: new Date() };
    this.properties = info.destinationService === undefined ? {} : { 'destination.service.host': info.destinationService };
    this.#upstreamHost = info.upstreamHost;
  }

  get upstream(): PeerInfo | undefined {
    return this.#upstreamHost?.();
  }
}

function streamInfo(info: FilterRequestInfo): StreamInfo {
  return new RequestStreamInfo(info);
}

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
export function wasmChainFilter(host: PluginHost, names: readonly string[]): L7Filter {
  const exportsOf = (cb: string): boolean => names.some((n) => host.runtimeOf(n)?.compiled.exportNames.has(cb) === true);
  const requestBody = exportsOf('proxy_on_request_body');
  const responseBody = exportsOf('proxy_on_response_body');
  const requestTrailers = exportsOf('proxy_on_request_trailers');
  const responseTrailers = exportsOf('proxy_on_response_trailers');
  const filter: L7Filter = {
    name: `wasm:${names.join(',')}`,
    bufferRequestBody: requestBody,
    bufferResponseBody: responseBody,
    start(info, body): L7FilterStream {
      let chain: FilterChain | undefined;
      const open = (): FilterChain => (chain ??= host.createStream(names, streamInfo(info)));
      // The request line as the plugins last left it: what their next map shows, and what an edit is compared to.
      let line: RequestLine = { method: info.method, path: info.path, authority: info.authority };
      // The header maps the chain holds, kept so edits made in body callbacks reach the headers while they are
      // still unsent (bodies reach plugins buffered, so the headers wait for them, as Envoy allows).
      let reqList: HeaderList | undefined;
      const reqPairs: HeaderPairs = [];
      let resList: HeaderList | undefined;
      let resStatus = 0;
      const resPairs: HeaderPairs = [];
      /** Applies the plugins' request map: fields, then the request line (Envoy clears the route cache on either). */
      const requestEdits = (): LocalReply | undefined => {
        if (reqList === undefined) return undefined;
        const changed = writeBackFields(reqList, reqPairs, HOST);
        const edit = editedRequestLine(reqPairs, line);
        if (edit === undefined) {
          if (changed) body.clearRouteCache();
          return undefined;
        }
        const problem = requestLineProblem(edit, line);
        if (problem !== undefined) return { status: 500, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `a plugin set an invalid request line: ${problem}\n` };
        line = edit;
        body.setRequestLine(edit.method, edit.path, edit.authority);
        return undefined;
      };
      const responseEdits = (): undefined => {
        if (resList !== undefined) writeBackFields(resList, resPairs, undefined);
        return undefined;
      };
      const stream: L7FilterStream = {
        onRequestHeaders(headers, eos) {
          reqList = headers;
          // Written back when the chain continues, which may be after a pause: a plugin that calls out and
          // then edits headers (the http_auth_random shape) makes its edits on resume.
          return statusOf(open().onRequestHeaders(requestPairs(headers, line, reqPairs), eos), requestEdits);
        },
        onResponseHeaders(status, headers, eos) {
          resList = headers;
          resStatus = status;
          return statusOf(open().onResponseHeaders(responsePairs(headers, status, resPairs), eos), responseEdits);
        },
        onDone() {
          chain?.done();
        },
      };
      // Body and trailer hooks exist only when a module has the callback: an absent hook keeps the proxy's
      // single-write fast path for small responses. Each first shows the plugins the headers as they are now.
      if (requestBody) {
        stream.onRequestBody = (chunk, eos) => {
          if (reqList !== undefined) requestPairs(reqList, line, reqPairs);
          return statusOf(open().onRequestBody(chunk, eos), (b) => {
            if (b !== undefined && b !== chunk) body.replaceRequestBody(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
            return requestEdits();
          });
        };
      }
      if (responseBody) {
        stream.onResponseBody = (chunk, eos) => {
          if (resList !== undefined) responsePairs(resList, resStatus, resPairs);
          return statusOf(open().onResponseBody(chunk, eos), (b) => {
            if (b !== undefined && b !== chunk) body.replaceResponseBody(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
            return responseEdits();
          });
        };
      }
      if (requestTrailers) {
        stream.onRequestTrailers = (trailers) => {
          if (reqList !== undefined) requestPairs(reqList, line, reqPairs);
          const pairs = responsePairs(trailers, undefined, []);
          return statusOf(open().onRequestTrailers(pairs), () => {
            writeBackFields(trailers, pairs, undefined);
            return requestEdits();
          });
        };
      }
      if (responseTrailers) {
        stream.onResponseTrailers = (trailers) => {
          if (resList !== undefined) responsePairs(resList, resStatus, resPairs);
          const pairs = responsePairs(trailers, undefined, []);
          return statusOf(open().onResponseTrailers(pairs), () => {
            writeBackFields(trailers, pairs, undefined);
            return responseEdits();
          });
        };
      }
      return stream;
    },
  };
  return filter;
}
