/**
 * The attached plugins of a destination as L7 filters, proxy-wasm modules and component filters alike: one order
 * (Istio WasmPlugin phase, then priority), one failStrategy rule for plugins that are not loaded. Consecutive
 * proxy-wasm plugins share one FilterChain (runtime/l7/wasm-filter.ts); a component filter is its own segment
 * (runtime/l7/component-filter-stream.ts). Responses run through the segments in reverse, as Envoy runs filters.
 */
import type { PluginConfig } from '../config/config-schema.js';
import type { ComponentFilterHost } from '../functions/component-filter-host.js';
import { instanceNames } from '../state/plugin-instances.js';
import type { PluginHost } from '../wasm/plugin-host.js';
import { componentL7Filter } from './component-filter-stream.js';
import {
  onRequestBodyHook,
  onRequestTrailersHook,
  onResponseBodyHook,
  onResponseTrailersHook,
  runFilterHook,
  runRequestHeaders,
  runResponseHeaders,
  type L7Filter,
  type L7FilterStream,
} from './l7-filter.js';
import type { PluginHostLike } from './l7-proxy.js';
import { notLoadedFilter, orderPlugins, wasmChainFilter } from './wasm-filter.js';

/** Filters that run as one: requests through them in order, responses in reverse. */
export function composeFilters(filters: readonly L7Filter[]): L7Filter {
  return {
    name: filters.map((f) => f.name).join('+'),
    bufferRequestBody: filters.some((f) => f.bufferRequestBody === true),
    bufferResponseBody: filters.some((f) => f.bufferResponseBody === true),
    start(info, body): L7FilterStream {
      const streams: L7FilterStream[] = [];
      for (const f of filters) {
        const s = f.start(info, body);
        if (s !== undefined) streams.push(s);
      }
      const reversed = [...streams].reverse();
      const stream: L7FilterStream = {
        onRequestHeaders: (headers, eos) => runRequestHeaders(streams, headers, eos),
        onResponseHeaders: (status, headers, eos) => runResponseHeaders(reversed, status, headers, eos),
        onDone(code, flags) {
          for (const s of streams) s.onDone?.(code, flags);
        },
      };
      // Only hooks some segment has: an absent body hook keeps the proxy's fast paths.
      if (streams.some((s) => s.onRequestBody !== undefined)) stream.onRequestBody = (chunk, eos) => runFilterHook(streams, 0, onRequestBodyHook, chunk, eos);
      if (streams.some((s) => s.onResponseBody !== undefined)) stream.onResponseBody = (chunk, eos) => runFilterHook(reversed, 0, onResponseBodyHook, chunk, eos);
      if (streams.some((s) => s.onRequestTrailers !== undefined)) stream.onRequestTrailers = (t) => runFilterHook(streams, 0, onRequestTrailersHook, t);
      if (streams.some((s) => s.onResponseTrailers !== undefined)) stream.onResponseTrailers = (t) => runFilterHook(reversed, 0, onResponseTrailersHook, t);
      return stream;
    },
  };
}

/** The PluginHostLike the L7 proxy takes: `configs` returns the current (expanded) `plugins:` section. */
export function createPluginFilters(wasm: PluginHost, components: ComponentFilterHost, configs: () => readonly PluginConfig[]): PluginHostLike {
  return {
    filtersFor(pluginNames, configOverrides) {
      const all = configs();
      const ordered = orderPlugins(instanceNames(pluginNames, configOverrides), all);
      // A plugin that is attached but not running (its load failed) fails closed unless it is FAIL_OPEN.
      const missing = ordered.filter((n) => !wasm.has(n) && !components.has(n) && all.find((c) => c.name === n)?.failStrategy !== 'FAIL_OPEN');
      if (missing.length > 0) return [notLoadedFilter(missing)];
      const segments: L7Filter[] = [];
      let run: string[] = [];
      const flush = (): void => {
        if (run.length > 0) segments.push(wasmChainFilter(wasm, run));
        run = [];
      };
      for (const name of ordered) {
        if (wasm.has(name)) {
          run.push(name);
          continue;
        }
        const filter = components.get(name);
        if (filter === undefined) continue;
        flush();
        segments.push(componentL7Filter(filter));
      }
      flush();
      return segments.length <= 1 ? segments : [composeFilters(segments)];
    },
  };
}
