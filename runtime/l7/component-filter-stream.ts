/**
 * Adapts one component filter (runtime/functions/component-filter.ts) to the L7 filter chain: each phase shows the
 * guest the request's or response's header list (request phases with the request line as pseudo-headers, as proxy-wasm
 * maps do), maps its action to continue or a local reply, and applies the plugin's failStrategy when a call fails.
 */
import type { ComponentAction, ComponentFilter, FilterPhaseView } from '../functions/component-filter.js';
import { PluginFailure } from '../wasm/plugin-failure.js';
import type { HeaderList } from './header-list.js';
import type { BodyAccess, FilterRequestInfo, FilterStatus, L7Filter, L7FilterStream, LocalReply } from './l7-filter.js';
import { L7_ERROR } from './local-reply.js';
import { finalStatus, requestLineProblem, requestPseudoHeader, type RequestLine } from './wasm-header-sync.js';

/** One phase's view: the header list it edits in place, and the request line (request phases) it may rewrite. */
class PhaseView implements FilterPhaseView {
  readonly headers: HeaderList;
  readonly info: FilterRequestInfo;
  readonly name: string;
  /** The request line as the filter left it (request phases), undefined in response phases. */
  line: RequestLine | undefined;
  /** The response status (response phases), undefined in request phases. */
  status: number | undefined;
  /** What the filter set `:status` to in a response phase, applied after the call. */
  statusEdit: string | undefined;
  changed = false;
  lineEdited = false;

  constructor(name: string, info: FilterRequestInfo, headers: HeaderList, line: RequestLine | undefined, status: number | undefined) {
    this.name = name;
    this.info = info;
    this.headers = headers;
    this.line = line;
    this.status = status;
  }

  get requestId(): string {
    return this.info.requestId;
  }

  getHeader(name: string): string | undefined {
    if (name.charCodeAt(0) === 0x3a) return this.#pseudo(name);
    const all = this.headers.getAll(name);
    return all.length === 0 ? undefined : all.length === 1 ? all[0] : all.join(', ');
  }

  setHeader(name: string, value: string): void {
    if (name.charCodeAt(0) === 0x3a) {
      if (name === ':status' && this.status !== undefined) {
        this.statusEdit = value;
        return;
      }
      const line = this.line;
      // The request line and the response status are editable; a `:scheme` edit is not applied (as weft's proxy-wasm maps).
      if (line === undefined || (name !== ':method' && name !== ':path' && name !== ':authority')) return;
      this.line = { ...line, [name.slice(1)]: value };
      this.lineEdited = true;
      return;
    }
    this.headers.set(name, value);
    this.changed = true;
  }

  removeHeader(name: string): void {
    if (name.charCodeAt(0) === 0x3a || !this.headers.has(name)) return;
    this.headers.remove(name);
    this.changed = true;
  }

  #pseudo(name: string): string | undefined {
    const line = this.line;
    if (line !== undefined) {
      const value = requestPseudoHeader(line, name);
      if (value !== undefined) return value;
    }
    if (name === ':status' && this.status !== undefined) return this.statusEdit ?? String(this.status);
    return undefined;
  }

  /** Envoy's attribute names for what a filter may ask about the request and its connection. */
  property(path: string): string | undefined {
    const i = this.info;
    const line = this.line ?? { method: i.method, path: i.path, authority: i.authority };
    const q = line.path.indexOf('?');
    switch (path) {
      case 'request.path':
        return line.path;
      case 'request.url_path':
        return q < 0 ? line.path : line.path.slice(0, q);
      case 'request.query':
        return q < 0 ? '' : line.path.slice(q + 1);
      case 'request.method':
        return line.method;
      case 'request.host':
        return line.authority;
      case 'request.scheme':
        return 'http';
      case 'request.protocol':
        return i.protocol;
      case 'request.id':
        return i.requestId;
      case 'source.address':
        return i.sourceAddress;
      case 'source.port':
        return i.sourcePort === undefined ? undefined : String(i.sourcePort);
      case 'source.principal':
        return i.sourceIdentity;
      case 'destination.address':
        return i.destinationAddress;
      case 'destination.port':
        return i.destinationPort === undefined ? undefined : String(i.destinationPort);
      case 'destination.service.host':
        return i.destinationService;
      case 'response.code':
        return this.status === undefined ? undefined : String(this.status);
      case 'plugin_name':
        return this.name;
      default:
        return undefined;
    }
  }
}

const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

function toReply(action: ComponentAction, plugin: string): LocalReply | undefined {
  if (action.tag === 'continue') return undefined;
  const r = action.val;
  if (!Number.isInteger(r.status) || r.status < 200 || r.status > 599) {
    return { status: 500, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `component filter ${plugin} answered status ${r.status}, outside 200-599\n` };
  }
  return {
    status: r.status,
    headers: r.headers.filter(([n]) => n.charCodeAt(0) !== 0x3a && n.toLowerCase() !== 'content-length').map(([n, v]) => [n.toLowerCase(), latin1(v)]),
    body: Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength),
    // Envoy's flags for filter-generated answers, as for proxy-wasm plugins: UAEX for authorization, RL for rate limits.
    flag: r.status === 401 || r.status === 403 ? 'UAEX' : r.status === 429 ? 'RL' : '-',
  };
}

/** The L7 filter running `filter` for each request (bodies buffered only for the http-body-filter world). */
export function componentL7Filter(filter: ComponentFilter): L7Filter {
  return {
    name: `component:${filter.name}`,
    bufferRequestBody: filter.seesBodies,
    bufferResponseBody: filter.seesBodies,
    start(info: FilterRequestInfo, body: BodyAccess): L7FilterStream {
      let line: RequestLine = { method: info.method, path: info.path, authority: info.authority };
      let reqHeaders: HeaderList | undefined;
      let resHeaders: HeaderList | undefined;
      let resStatus: number | undefined;
      // FAIL_OPEN: after a failure the filter is skipped for the rest of this request.
      let skipped = false;
      const run = (view: PhaseView, call: (v: PhaseView) => ComponentAction, request: boolean): FilterStatus => {
        if (skipped) return undefined;
        let action: ComponentAction;
        try {
          action = call(view);
        } catch (err) {
          if (!(err instanceof PluginFailure)) throw err;
          if (filter.failStrategy === 'FAIL_OPEN') {
            skipped = true;
            return undefined;
          }
          return { status: 503, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `plugin ${filter.name} failed (${err.reason})\n` };
        }
        if (request && view.line !== undefined) {
          if (view.lineEdited) {
            const problem = requestLineProblem(view.line, line);
            if (problem !== undefined) return { status: 500, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `a plugin set an invalid request line: ${problem}\n` };
            line = view.line;
            body.setRequestLine(line.method, line.path, line.authority);
          } else if (view.changed) body.clearRouteCache();
        }
        if (view.statusEdit !== undefined && view.status !== undefined) {
          const edit = finalStatus(view.statusEdit);
          const problem = typeof edit === 'string' ? edit : edit === view.status ? undefined : body.setResponseStatus(edit);
          // Envoy answers 502 when a filter leaves the response without a valid :status, as for proxy-wasm plugins.
          if (problem !== undefined) return { status: 502, code: L7_ERROR.pluginFailed, flag: 'UAEX', body: `a plugin set an invalid :status: ${problem}\n` };
          resStatus = edit as number;
        }
        return toReply(action, filter.name);
      };
      const requestView = (headers: HeaderList): PhaseView => new PhaseView(filter.name, info, headers, line, undefined);
      const responseView = (headers: HeaderList): PhaseView => new PhaseView(filter.name, info, headers, undefined, resStatus);
      const stream: L7FilterStream = {
        onRequestHeaders(headers, eos) {
          reqHeaders = headers;
          return run(requestView(headers), (v) => filter.onRequestHeaders(v, eos), true);
        },
        onResponseHeaders(status, headers, eos) {
          resHeaders = headers;
          resStatus = status;
          return run(responseView(headers), (v) => filter.onResponseHeaders(v, eos), false);
        },
      };
      if (!filter.seesBodies) return stream;
      // Body phases still see (and may edit) the headers, which wait for the buffered body.
      stream.onRequestBody = (chunk, eos) => (reqHeaders === undefined ? undefined : run(requestView(reqHeaders), (v) => filter.onRequestBody(v, chunk, eos), true));
      stream.onResponseBody = (chunk, eos) => (resHeaders === undefined ? undefined : run(responseView(resHeaders), (v) => filter.onResponseBody(v, chunk, eos), false));
      stream.onRequestTrailers = (trailers) => run(new PhaseView(filter.name, info, trailers, undefined, undefined), (v) => filter.onRequestTrailers(v), false);
      stream.onResponseTrailers = (trailers) => run(new PhaseView(filter.name, info, trailers, undefined, undefined), (v) => filter.onResponseTrailers(v), false);
      return stream;
    },
  };
}
