// Per-plugin cost: CPU µs per request of each first-party plugin with a realistic configuration, driven through weft's
// own PluginHost and FilterChain as the L7 path drives them (context create, request headers, response headers, done),
// against the plain path (a chain with no plugin), a no-op filter and a hand-written filter doing header-rewrite's
// edits. Cases run interleaved, best of several rounds (the machine is shared). Numbers, never assertions.
import { pathToFileURL } from 'node:url';
import { setLogLevel } from '../../runtime/log.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { HeaderList } from '../../runtime/l7/header-list.js';
import { parseRequestHead, type RequestHead } from '../../runtime/l7/http1-head-parser.js';
import { splicedHead } from '../../runtime/l7/http1-head-splice.js';
import { appendedFieldLines, requestHeadText } from '../../runtime/l7/http1-head-writer.js';
import { continueTraceLine } from '../../runtime/l7/traceparent.js';
import type { BodyAccess, FilterRequestInfo } from '../../runtime/l7/l7-filter.js';
import { wasmChainFilter } from '../../runtime/l7/wasm-filter.js';
import type { HeaderPairs } from '../../runtime/wasm/header-map-codec.js';
import { PluginHost } from '../../runtime/wasm/plugin-host.js';
import type { StreamInfo } from '../../runtime/wasm/stream-info.js';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import {
  BENCH_REQUEST_HEADERS, BENCH_REQUEST_PATH, BENCH_SOURCE_PRINCIPAL, FIRST_PARTY_BENCH_PLUGINS, bearerHeader, createBenchForeignFunctions,
  createJwtBenchFixture, firstPartyBenchConfig, firstPartyPluginConfig,
} from './first-party-plugin-bench.js';

/** header-rewrite's realistic configuration (one set, one remove on the request, one add on the response), as in the L7 bench. */
export const HEADER_REWRITE_BENCH_CONFIG = {
  request: { set: [{ name: 'x-wasm-filter', value: 'on' }], remove: ['x-internal'] },
  response: { add: [{ name: 'x-served-by', value: 'weft-wasm' }] },
};

interface Case {
  label: string;
  /** Plugin names in chain order; [] is the plain path. */
  plugins: string[];
  extraHeaders?: [string, string][];
  /** Driven as the L7 path drives it (wasmChainFilter over the exchange's HeaderList), adapter and map sync included. */
  l7?: boolean;
}

/** What the L7 exchange hands a filter stream; the bench never dispatches, so the hooks only count. */
const L7_INFO: FilterRequestInfo = {
  method: 'GET', path: BENCH_REQUEST_PATH, authority: 'api.default', protocol: 'HTTP/1.1', sourceAddress: '10.0.0.1', sourcePort: 40000,
  sourceIdentity: BENCH_SOURCE_PRINCIPAL, destinationService: 'api.default.svc.cluster.local', requestId: 'bench',
};
let routeClears = 0;
const L7_BODY: BodyAccess = {
  replaceRequestBody: () => undefined,
  replaceResponseBody: () => undefined,
  setRequestLine: () => undefined,
  clearRouteCache: () => void routeClears++,
  setResponseStatus: () => undefined,
};

/**
 * What the L7 router does in JavaScript to send the request head upstream (http1-exchange-router's writeRequestHead,
 * without a route rewrite), returning the head's length: the client's head with the filters' edits spliced in, the added
 * lines and trace context handed to the addon beside it (one sendmsg of the parts, nothing copied here), or the head
 * written anew as a string (encoded here with Buffer.from as the addon encodes it).
 */
function upstreamHead(h: RequestHead, list: HeaderList): number {
  const trace = continueTraceLine(list.get('traceparent'));
  const spliced = h.verbatim === undefined ? undefined : splicedHead(h.verbatim, list, true);
  const lines = spliced === undefined ? undefined : appendedFieldLines(list, true, list.addedFrom);
  if (lines !== undefined) return spliced!.length + (lines === '' ? trace.line : lines + trace.line).length;
  const text = requestHeadText(h, list, { target: h.target, rewriteAuthority: undefined, authority: L7_INFO.authority, traceparent: trace.header, replacedBodyLength: undefined });
  return Buffer.from(text, 'latin1').length;
}

/** Returns µs of CPU per request for every case, and the derived costs over the plain path and the no-op filter. */
/**
 * `cases` keeps only those labels (with plain and noop, the baselines), e.g. to profile one plugin:
 * `WEFT_PLUGIN_COST_CASES=cors node --cpu-prof dist/test/bench/plugin-cost.js`. `evictKb` (WEFT_PLUGIN_COST_EVICT_KB)
 * walks that much unrelated memory before each request and between its request and response callbacks, in every case
 * alike (the plain one too, so `_over_plain` stays the plugin's share): under wrk the kernel and the rest of the L7
 * path run there and the plugin's code and memory come back cold, which a hot loop hides (64 KB: cors 1.2 → 3.3 µs).
 */
export async function benchPluginCost(opts: { rounds?: number; requests?: number; cases?: readonly string[]; evictKb?: number } = {}): Promise<Record<string, number>> {
  setLogLevel('error');
  const rounds = opts.rounds ?? 5;
  const requests = opts.requests ?? 4000;
  const evictWords = ((opts.evictKb ?? 0) * 1024) >> 2;
  const junk = new Int32Array(evictWords);
  // One touch per 64-byte line; the sum is kept so the walk is not optimized away.
  let touched = 0;
  const evict = (): void => {
    for (let i = 0; i < evictWords; i += 16) touched += junk[i]!++;
  };
  const jwt = createJwtBenchFixture();
  const services = createBenchForeignFunctions();
  const host = new PluginHost({ metrics: new MetricsRegistry(), foreignFunctions: services.foreign, idleMs: 0 });
  const configs = [
    pluginConfig('noop', await wasmFileUrl(await fixture('noop'))),
    pluginConfig('hand-rewrite', await wasmFileUrl(await fixture('hand-rewrite'))),
    await firstPartyPluginConfig('header-rewrite', HEADER_REWRITE_BENCH_CONFIG),
    ...(await Promise.all(FIRST_PARTY_BENCH_PLUGINS.map((name) => firstPartyPluginConfig(name, firstPartyBenchConfig(name, jwt))))),
  ];
  const allCases: Case[] = [
    { label: 'plain', plugins: [] },
    { label: 'noop', plugins: ['noop'] },
    { label: 'hand_rewrite', plugins: ['hand-rewrite'] },
    { label: 'header_rewrite', plugins: ['header-rewrite'] },
    { label: 'authz', plugins: ['authz'] },
    { label: 'cors', plugins: ['cors'] },
    { label: 'fault_injection', plugins: ['fault-injection'] },
    { label: 'jwt_authn_es256', plugins: ['jwt-authn'], extraHeaders: [bearerHeader(jwt)] },
    { label: 'ratelimit', plugins: ['ratelimit'] },
    { label: 'l7_plain', plugins: [], l7: true },
    { label: 'l7_noop', plugins: ['noop'], l7: true },
    { label: 'l7_hand_rewrite', plugins: ['hand-rewrite'], l7: true },
    { label: 'l7_header_rewrite', plugins: ['header-rewrite'], l7: true },
    { label: 'l7_jwt_authn', plugins: ['jwt-authn'], l7: true },
    { label: 'l7_ratelimit', plugins: ['ratelimit'], l7: true },
    { label: 'l7_authz', plugins: ['authz'], l7: true },
    { label: 'l7_cors', plugins: ['cors'], l7: true },
    { label: 'l7_fault_injection', plugins: ['fault-injection'], l7: true },
  ];
  const cases = opts.cases === undefined ? allCases : allCases.filter((c) => c.label === 'plain' || c.label === 'noop' || opts.cases!.includes(c.label));
  const info: StreamInfo = { source: { address: '10.0.0.1', port: 40000, principal: BENCH_SOURCE_PRINCIPAL } };
  try {
    const loaded = await host.load(configs);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const l7Filters = new Map(cases.filter((c) => c.l7 === true && c.plugins.length > 0).map((c) => [c.label, wasmChainFilter(host, c.plugins)]));
    /**
     * The exchange's side: the request as wrk sends it in the L7 plugin rows (plus the x-internal header-rewrite's
     * realistic config removes), parsed, the filter stream, the head written upstream, an nginx-like response head.
     */
    const rawRequest = Buffer.from(
      `GET ${BENCH_REQUEST_PATH} HTTP/1.1\r\nHost: api.default\r\nUser-Agent: wrk\r\nAccept: */*\r\n${[...BENCH_REQUEST_HEADERS, bearerHeader(jwt), ['x-internal', 'secret']].map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`,
      'latin1',
    );
    const limits = { maxHeadBytes: 64 * 1024, maxHeaders: 100 };
    const oneL7 = (c: Case): void => {
      if (evictWords > 0) evict();
      const head = parseRequestHead(rawRequest, 0, rawRequest.length, limits) as RequestHead;
      const req = new HeaderList(head.headers);
      const res = new HeaderList(['server', 'nginx', 'date', 'Mon, 07 Dec 2026 13:00:00 GMT', 'content-type', 'text/plain', 'content-length', '2']);
      const filter = l7Filters.get(c.label);
      const s = filter?.start(L7_INFO, L7_BODY);
      if (s !== undefined && s.onRequestHeaders!(req, true) !== undefined) throw new Error(`${c.label}: request not continued`);
      upstreamHead(head, req);
      if (evictWords > 0) evict();
      if (s === undefined) return;
      // A chain whose plugins do nothing on the response has no response hook, and the exchange skips it.
      if (s.onResponseHeaders?.(200, res, false) !== undefined) throw new Error(`${c.label}: response not continued`);
      s.onDone!(200, '-');
    };
    const one = (c: Case): void => {
      if (c.l7 === true) return oneL7(c);
      if (evictWords > 0) evict();
      const chain = host.createStream(c.plugins, info);
      const req: HeaderPairs = [
        [':method', 'GET'], [':path', BENCH_REQUEST_PATH], [':authority', 'api.default'], [':scheme', 'http'],
        ['user-agent', 'wrk'], ['accept', '*/*'], ...BENCH_REQUEST_HEADERS,
        ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
      ];
      if (c.extraHeaders !== undefined) req.push(...c.extraHeaders);
      const a = chain.onRequestHeaders(req, true);
      if (a.kind !== 'continue') throw new Error(`${c.label}: ${a.kind}`);
      if (evictWords > 0) evict();
      chain.onResponseHeaders([[':status', '200'], ['content-type', 'text/plain'], ['content-length', '2']], false);
      chain.done();
    };
    const cpuUs = (c: Case, n: number): number => {
      const before = process.cpuUsage();
      for (let i = 0; i < n; i++) one(c);
      const d = process.cpuUsage(before);
      return (d.user + d.system) / n;
    };
    for (const c of cases) cpuUs(c, requests);
    const best = new Map<string, number>();
    for (let r = 0; r < rounds; r++) for (const c of cases) best.set(c.label, Math.min(best.get(c.label) ?? Infinity, cpuUs(c, requests)));
    const out: Record<string, number> = {};
    const plain = best.get('plain')!;
    const noop = best.get('noop')!;
    for (const c of cases) out[`${c.label}_cpu_us_per_req`] = best.get(c.label)!;
    for (const c of cases) {
      if (c.label === 'plain' || c.l7 === true) continue;
      out[`${c.label}_over_plain_us`] = best.get(c.label)! - plain;
      if (c.label !== 'noop') out[`${c.label}_over_noop_us`] = best.get(c.label)! - noop;
    }
    const over = (a: string, b: string): number => (best.get(a) ?? NaN) - (best.get(b) ?? NaN);
    out.header_rewrite_sdk_over_hand_written_us = over('header_rewrite', 'hand_rewrite');
    // The whole Wasm side of an L7 request (adapter, map sync, host, guest) over the L7 path without plugins.
    for (const c of cases) if (c.l7 === true && c.plugins.length > 0) out[`${c.label}_over_l7_plain_us`] = over(c.label, 'l7_plain');
    out.l7_header_rewrite_sdk_over_hand_written_us = over('l7_header_rewrite', 'l7_hand_rewrite');
    if (touched === -1) out.never = 0;
    return out;
  } finally {
    host.close();
    await services.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const only = process.env.WEFT_PLUGIN_COST_CASES;
  const requests = process.env.WEFT_PLUGIN_COST_REQUESTS;
  const evictKb = process.env.WEFT_PLUGIN_COST_EVICT_KB;
  benchPluginCost({
    ...(only === undefined || only === '' ? {} : { cases: only.split(',') }),
    ...(requests === undefined ? {} : { requests: Number(requests) }),
    ...(evictKb === undefined || evictKb === '' ? {} : { evictKb: Number(evictKb) }),
  }).then(
    (r) => process.stdout.write(`${Object.entries(r).map(([k, v]) => `${k.padEnd(44)} ${v.toFixed(2)}`).join('\n')}\n`),
    (err: unknown) => {
      process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
      process.exitCode = 1;
    },
  );
}
