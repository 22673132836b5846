#!/usr/bin/env node
/** The `weft` command: `run --config FILE` starts a node runtime, `validate FILE` checks a config and lists every problem. */
import { parseArgs } from 'node:util';
import { installImportResolver } from './import-resolver.js';
import type { App } from './app.js';
import { ConfigWatcher } from './config/config-watcher.js';
import { formatProblem } from './config/config-problem.js';
import { loadConfigInChild } from './config/config-load-child.js';
import { ENV, envValue } from './config/defaults.js';
import { createLogger, isLogLevel, setLogLevel } from './log.js';
import { loadNativeSocket } from './native/weft-socket.js';
import { resolveWorkerCount } from './workers/worker-count.js';
import type { KubernetesSource } from './kubernetes/kubernetes-source.js';
import type { Upgradable } from './upgrade/hot-upgrade.js';
import type { WorkerPrimary } from './workers/worker-primary.js';

const log = createLogger('cli');

const USAGE = `usage:
  weft run --config FILE      run the node runtime (reloads on file change and SIGHUP, drains on SIGTERM)
    --takeover                take the listening sockets of the weft running with FILE, then let it drain (hot upgrade)
  weft validate FILE          check a configuration; exit 1 listing every problem as file:line
  weft plugin build|new ...   build a plugin's .wasm, or scaffold a new plugin (weft plugin help)
  weft fn build|new ...       build a Wasm component function, or scaffold a new one (weft fn help)
  weft version
`;

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, takeover: { type: 'boolean', default: false } }, allowPositionals: false });
  const file = values.config ?? envValue(ENV.configPath);
  if (file === undefined) {
    process.stderr.write(`weft run: --config FILE is required (or set ${ENV.configPath})\n`);
    return 2;
  }
  const loaded = await loadConfigInChild(file);
  if (!loaded.ok) {
    for (const p of loaded.problems) process.stderr.write(formatProblem(p) + '\n');
    return 1;
  }
  for (const w of loaded.warnings ?? []) log.warn({ warning: formatProblem(w) }, 'configuration warning');
  // In a cluster the DaemonSet's downward API sets NODE_NAME (as for ztunnel and istio-cni).
  const nodeName = envValue(ENV.nodeName) ?? (loaded.config.source === 'kubernetes' ? process.env[ENV.kubeNodeName] || undefined : undefined);
  const config = nodeName === undefined ? loaded.config : { ...loaded.config, node: nodeName };
  const workers = resolveWorkerCount(config.workers);
  // The runtime's modules load only now, through the resolver main() installed (import-resolver.ts says why).
  const { startUpgradable } = await import('./upgrade/hot-upgrade.js');
  let source: KubernetesSource | undefined;
  let stopping = false;
  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => (resolveExit = resolve));
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'draining');
    watcher.stop();
    upgradable?.close();
    (source?.stop() ?? Promise.resolve()).then(() => app.shutdown()).then(
      () => {
        // process.exit() would join a worker thread stuck in Node's teardown and wait with it (runtime/upgrade/README.md).
        if ('threadsLeft' in app && app.threadsLeft) process.stderr.write('', () => loadNativeSocket()?.exitNow?.(0));
        resolveExit(0);
      },
      (err: unknown) => {
        log.error({ error: err }, 'shutdown failed');
        resolveExit(1);
      },
    );
  };
  // One event loop runs in this thread (the lowest idle memory); more run as worker threads under a primary. Either
  // is upgradable in place (--takeover, runtime/upgrade/README.md).
  let upgradable: Upgradable<unknown> | undefined;
  let app: App | WorkerPrimary;
  const upgrade = { configFile: file, takeover: values.takeover === true, onTakenOver: (pid: number) => stop(`taken over by ${pid}`) };
  if (workers.count === 1) {
    // The App's modules load only here: a multi-worker primary runs none and does not hold them.
    const { createApp } = await import('./app.js');
    const single = await startUpgradable({ ...upgrade, createApp: () => createApp(config, { onQuit: () => stop('quitquitquit') }) });
    upgradable = single;
    app = single.app;
    // /config_dump says how many event loops run and why, as the multi-worker primary's does.
    app.addDumpSection('workers', () => ({ ...workers, running: 1 }));
    // Start-up freed module-loading and parse buffers in malloc's arenas; give those pages back (about 0.8 MB of RSS).
    loadNativeSocket()?.trimMemory();
  } else {
    const { createWorkerPrimary } = await import('./workers/worker-primary.js');
    const primary = await startUpgradable({ ...upgrade, createApp: () => createWorkerPrimary(config, { count: workers, onQuit: () => stop('quitquitquit') }).then(releaseStartupMemory), sockets: (p) => p.handover });
    upgradable = primary;
    app = primary.app;
  }
  if (config.source === 'kubernetes') {
    const { attachKubernetesSource } = await import('./kubernetes/attach-kubernetes-source.js');
    source = attachKubernetesSource(app, config, { print: (line) => process.stdout.write(line + '\n') });
  }
  const watcher = new ConfigWatcher(file, source ?? app);
  watcher.start();
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return exited;
}

/**
 * The multi-worker primary serves no traffic: one memory-reducing GC of its thread drops what start-up grew (about
 * 3 MB). Not on a thread that serves: in an interleaved A/B it cost L7 worker threads 10–40% more CPU per request for
 * as long as we measured (test/bench/README.md, "Idle memory, second pass").
 */
function releaseStartupMemory<T>(app: T): T {
  loadNativeSocket()?.releaseMemory?.();
  return app;
}

async function validate(argv: string[]): Promise<number> {
  const file = argv[0];
  if (file === undefined) {
    process.stderr.write('weft validate: FILE is required\n');
    return 2;
  }
  const result = await loadConfigInChild(file);
  if (result.ok) {
    for (const w of result.warnings ?? []) process.stderr.write(`warning: ${formatProblem(w)}\n`);
    process.stdout.write(`${file}: valid (${result.config.workloads.length} workloads, ${result.config.services.length} services, ${result.config.plugins.length} plugins, ${result.config.policies.length} policies)\n`);
    return 0;
  }
  for (const p of result.problems) process.stderr.write(formatProblem(p) + '\n');
  process.stderr.write(`${file}: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}\n`);
  return 1;
}

async function main(argv: string[]): Promise<number> {
  installImportResolver();
  const level = envValue(ENV.logLevel);
  if (level !== undefined && isLogLevel(level)) setLogLevel(level);
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': {
      const code = await run(rest);
      // Drained and closed: exit now rather than in Node's environment teardown, which was seen spinning in
      // CleanupHandles in a process that had been taken over after taking over itself (cause not yet found).
      await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
      return process.exit(code);
    }
    case 'validate':
      return validate(rest);
    case 'plugin': {
      // Loaded lazily: the AssemblyScript compiler is only needed by plugin authors, never by a running node.
      const { pluginCommand } = await import('../sdk/cli/plugin-command.js');
      return pluginCommand(rest);
    }
    case 'fn': {
      // Loaded lazily: componentize-js (SpiderMonkey, Wizer) is only needed by function authors.
      const { fnCommand } = await import('../sdk/cli/fn-command.js');
      return fnCommand(rest);
    }
    case 'version':
      process.stdout.write(`weft 0.1.0 (node ${process.version})\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`weft: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`weft: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
