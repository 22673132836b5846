// Child process for the L7 benchmark: weft's L7 proxy on one port in front of an origin, optionally with the hand-rewrite Wasm filter, any WAT fixture (`fixture:<name>`), the header-rewrite SDK plugin, a native header filter, a native no-op filter (`native-noop`) or one first-party plugin (`plugin:<name>`, its configuration as JSON in WEFT_BENCH_PLUGIN_CONFIG) (args: port originPort mode [appProtocol]).
import net from 'node:net';
import path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import { ensurePluginBuilt } from '../../sdk/testing/index.js';
import { configSchema } from '../../runtime/config/config-schema.js';
import { createLogger } from '../../runtime/log.js';
import { ProxyState } from '../../runtime/state/proxy-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { PluginHost } from '../../runtime/wasm/plugin-host.js';
import { createL7Proxy, type PluginHostLike } from '../../runtime/l7/l7-proxy.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import type { L7Filter } from '../../runtime/l7/l7-filter.js';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { HEADER_REWRITE_BENCH_CONFIG } from './plugin-cost.js';
import { BENCH_SOURCE_PRINCIPAL, createBenchForeignFunctions, firstPartyPluginConfig } from './first-party-plugin-bench.js';

type Mode = 'plain' | 'wasm' | 'wasm-sdk' | 'native' | 'native-noop' | `plugin:${string}` | `fixture:${string}`;

/** The repository root, whether this runs from test/bench (tsx) or dist/test/bench. */
function repoRoot(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); dir !== '/'; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'weft') return dir;
  }
  throw new Error('cannot find the weft repository root');
}

/** The first-party header-rewrite plugin (built by npm install) with the realistic configuration the hand-rewrite WAT filter mirrors: one set, one remove, one add. */
async function sdkHeaderRewrite(): Promise<PluginConfig> {
  const wasm = await ensurePluginBuilt(path.join(repoRoot(), 'plugins/header-rewrite'));
  return pluginConfig('header-rewrite', pathToFileURL(wasm).href, { config: HEADER_REWRITE_BENCH_CONFIG });
}

async function main(): Promise<void> {
  const [portArg, originArg, modeArg, appProtocolArg] = process.argv.slice(2);
  const port = Number(portArg);
  const originPort = Number(originArg);
  const mode = (modeArg ?? 'plain') as Mode;
  const firstParty = mode.startsWith('plugin:') ? mode.slice('plugin:'.length) : undefined;
  // `fixture:<name>`: a WAT filter from test/fixtures/wasm (noop, add-header), to measure the host's share on the real path.
  const wat = mode.startsWith('fixture:') ? mode.slice('fixture:'.length) : undefined;
  const plugins =
    mode === 'wasm' ? [pluginConfig('hand-rewrite', await wasmFileUrl(await fixture('hand-rewrite')))]
    : wat !== undefined ? [pluginConfig(wat, await wasmFileUrl(await fixture(wat)))]
    : mode === 'wasm-sdk' ? [await sdkHeaderRewrite()]
    : firstParty !== undefined ? [await firstPartyPluginConfig(firstParty, JSON.parse(process.env.WEFT_BENCH_PLUGIN_CONFIG ?? '{}'))]
    : [];
  const config = configSchema.parse({
    accessLog: { enabled: false },
    plugins,
    workloads: [{ name: 'origin', addresses: ['127.0.0.1'], labels: { app: 'origin' } }],
    services: [
      {
        name: 'origin',
        addresses: ['10.96.0.1'],
        ports: [{ port: 80, targetPort: originPort, appProtocol: appProtocolArg ?? 'http' }],
        selector: { app: 'origin' },
        annotations: plugins.length > 0 ? { 'weft.dev/plugins': plugins.map((p) => p.name).join(',') } : {},
      },
    ],
  });
  const state = new ProxyState(config);
  const metrics = new MetricsRegistry();
  let wasm: PluginHostLike | undefined;
  if (plugins.length > 0) {
    // A first-party plugin gets the host services `weft run` registers (rate limits, weft.crypto.verify).
    const foreignFunctions = firstParty === undefined ? new ForeignFunctionRegistry() : createBenchForeignFunctions().foreign;
    const host = new PluginHost({ metrics, foreignFunctions, idleMs: 0 });
    const loaded = await host.load(plugins);
    if (!loaded.ok) throw new Error(`plugin load failed: ${JSON.stringify(loaded.problems)}`);
    wasm = createWasmPlugins(host, () => state.current.config.plugins);
  }
  // WEFT_BENCH_ACCESS_LOG=<file>: the access log on (the bench runs without it), to measure what it costs per request.
  const accessLogPath = process.env.WEFT_BENCH_ACCESS_LOG;
  const accessLog = accessLogPath === undefined || accessLogPath === '' ? { enabled: false } : { enabled: true, path: accessLogPath };
  const native: L7Filter = { name: 'native-header', start: () => ({ onRequestHeaders: (h) => void h.set('x-wasm-filter', 'on'), onResponseHeaders: (_s, h) => void h.add('x-served-by', 'weft-native') }) };
  // `native-noop`: a JavaScript filter that does nothing, to measure what the exchange pays for any filter without Wasm.
  const nativeNoop: readonly L7Filter[] = [{ name: 'native-noop', start: () => ({ onRequestHeaders: () => undefined }) }];
  const extraFilters = mode === 'native' ? () => [native] : mode === 'native-noop' ? () => nativeNoop : undefined;
  const proxy = createL7Proxy({ state, metrics, logger: createLogger('l7-bench'), ...(wasm === undefined ? {} : { plugins: wasm }), ...(extraFilters === undefined ? {} : { extraFilters }), accessLog });
  const service = state.current.serviceByName('origin.default')!;
  const server = net.createServer((socket) => {
    proxy.handleConnection(socket, {
      service,
      servicePort: service.ports[0]!,
      originalDst: { address: '10.96.0.1', port: 80 },
      source: { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 },
      // First-party plugins see a peer identity, as over HBONE: authz's policy allows its namespace.
      ...(firstParty === undefined ? {} : { sourceIdentity: BENCH_SOURCE_PRINCIPAL }),
    });
  });
  server.listen({ port, host: '127.0.0.1', backlog: 4096 });
  const stop = (): void => {
    server.close();
    void proxy.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`l7 bench server failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
