/**
 * The body of one worker thread: a whole App (listeners on SO_REUSEPORT sockets, L4, HBONE, L7) on this thread's event
 * loop, answering the primary's calls (apply a config, metrics, dump, drain) and sending access-log lines to it.
 */
import { isMainThread, parentPort, threadId, workerData } from 'node:worker_threads';
import type { WeftConfig, PluginConfig } from '../config/config-schema.js';
import type { CompiledPlugin } from '../wasm/plugin-vm.js';
import type { SharedCaRoot } from '../identity/ca-client-from-config.js';
import type { LogLevel } from '../log.js';
import type { HandoverSocket } from '../upgrade/socket-handover.js';
import type { WorkloadChange } from '../state/state-snapshot.js';

/** What the primary hands each worker at spawn. */
export interface WorkerStart {
  weftWorker: true;
  id: number;
  config: WeftConfig;
  counters: SharedArrayBuffer;
  compiled: Record<string, CompiledPlugin>;
  /** The config leaves the CA to weft (no caAddress, root files or caDir): sign with the primary's one root. */
  sharedCa: boolean;
  /** The primary's log levels (`default` and per component) at spawn. */
  logLevels?: Record<string, LogLevel>;
  /** A hot upgrade: this worker's share of the predecessor's sockets, adopted at the primary's `handover-commit`. */
  inherited?: HandoverSocket[];
  /** Pinned address -> configured address, so this worker's handover keys match the predecessor's (pin-ports.ts). */
  handoverAliases?: [string, string][];
}


export interface WorkerDump {
  id: number;
  threadId: number;
  version: number;
  /** sha256 of the configuration this worker runs: equal on every worker after a reload. */
  configSha256: string;
  activeConnections: number;
  /** This worker's log levels (POST /logging on the primary reaches every worker). */
  logLevels: Record<string, LogLevel>;
  sections: Record<string, unknown>;
}

/** Access-log lines reach the primary in one message per event-loop turn, not one per line. */
export const LOG_NOTE = 'log';
export const STARTED_NOTE = 'started';
export const CA_ROOT_RPC = 'ca-root';
/** How long an access-log line may wait in a worker before it goes to the primary (as nginx's `access_log … flush=` buffers). */
const LOG_FLUSH_MS = 50;
/** POST /logging on the primary: the new levels for every worker. */
export const LOG_LEVELS_NOTE = 'log-levels';
/** Hot upgrade calls from the primary: lend duplicates of the listening sockets, adopt inherited ones, stop accepting. */
export const HANDOVER_LEND_RPC = 'handover-lend';
export const HANDOVER_COMMIT_RPC = 'handover-commit';
export const STOP_ACCEPTING_RPC = 'stop-accepting';
/** A workload/Service change the worker derives its snapshot from (App.patchWorkloads), in order with reloads. */
export const PATCH_RPC = 'patch';

async function main(start: WorkerStart): Promise<void> {
  const port = parentPort!;
  // Module hooks are per thread: this worker's runtime modules resolve as the main thread's do (import-resolver.ts).
  const { installImportResolver } = await import('../import-resolver.js');
  installImportResolver();
  const [{ App }, { WorkerRpc }, { ProcessMemoryBackend }, { SharedCounterTable }, { useSharedCaRoot }, log, { servePodFanout }, { socketHandover, duplicateFd }] = await Promise.all([
    import('../app.js'),
    import('./worker-rpc.js'),
    import('./process-memory-backend.js'),
    import('../shared-state/shared-counter-table.js'),
    import('../identity/ca-client-from-config.js'),
    import('../log.js'),
    import('../inpod/pod-fanout.js'),
    import('../upgrade/socket-handover.js'),
  ]);
  const applyLevels = (levels: Record<string, LogLevel>): void => {
    for (const [component, level] of Object.entries(levels)) log.setLogLevel(level, component === 'default' ? undefined : component);
  };
  applyLevels(start.logLevels ?? {});
  const rpc = new WorkerRpc(port);
  rpc.handle(LOG_LEVELS_NOTE, (levels) => applyLevels(levels as Record<string, LogLevel>));
  if (start.sharedCa) useSharedCaRoot(() => rpc.call<SharedCaRoot>(CA_ROOT_RPC));
  let compiled = new Map(Object.entries(start.compiled));
  let pending = '';
  const flush = (): void => {
    if (pending === '') return;
    rpc.note(LOG_NOTE, pending);
    pending = '';
  };
  // Lines cross to the primary every LOG_FLUSH_MS or 64 KiB, not every loop turn: each message wakes the primary's
  // thread, and at one message per turn the relay cost as much CPU per request as the rest of the access log.
  const accessLogSink = (line: string): void => {
    if (pending === '') setTimeout(flush, LOG_FLUSH_MS).unref();
    pending += line + '\n';
    if (pending.length > 64 * 1024) flush();
  };
  const app = new App(start.config, {
    accessLogSink,
    worker: {
      id: start.id,
      memoryBackend: new ProcessMemoryBackend(new SharedCounterTable(start.counters), rpc),
      compiledPlugins: (config: PluginConfig) => compiled.get(config.name),
      // L7 lines come as bytes every LOG_FLUSH_MS or 64 KiB already (the L7 log batches them itself): they cross as
      // they are, copied out of the log's buffer to their own size (a view would clone the whole buffer).
      accessLogBytes: (batch) => {
        flush();
        rpc.note(LOG_NOTE, new Uint8Array(batch));
      },
    },
  });
  rpc.handle('apply', async (payload) => {
    const { config, compiled: next } = payload as { config: WeftConfig; compiled: Record<string, CompiledPlugin> };
    compiled = new Map(Object.entries(next));
    const result = await app.reload(config);
    return { ...result, ports: { app: app.ports, hbone: app.hbone.ports } };
  });
  rpc.handle(PATCH_RPC, (change) => app.patchWorkloads(change as WorkloadChange));
  servePodFanout(rpc, () => app.inpod?.pods);
  rpc.handle('metrics', () => app.metrics.registry.getMetricsAsJSON());
  rpc.handle('dump', (): WorkerDump => ({
    id: start.id,
    threadId,
    version: app.state.current.version,
    configSha256: process.getBuiltinModule('node:crypto').createHash('sha256').update(JSON.stringify(app.state.current.config)).digest('hex'),
    activeConnections: app.drain.activeCount,
    logLevels: log.logLevels(),
    sections: app.dumpSections(),
  }));
  // Descriptor numbers are the process's: the primary sends these duplicates and closes them, whatever this thread's
  // listeners do meanwhile.
  rpc.handle(HANDOVER_LEND_RPC, (payload) => {
    socketHandover.setAliases((payload as { aliases: [string, string][] }).aliases);
    return socketHandover.held().map((s): HandoverSocket => ({ record: s.record, fd: duplicateFd(s.fd) }));
  });
  rpc.handle(HANDOVER_COMMIT_RPC, async () => {
    await socketHandover.commit();
    return socketHandover.discardUnused();
  });
  rpc.handle(STOP_ACCEPTING_RPC, () => app.stopAccepting(true));
  rpc.handle('drain', async (payload) => {
    const result = await app.shutdown((payload as { deadlineMs?: number }).deadlineMs);
    flush();
    return result;
  });
  socketHandover.setAliases(start.handoverAliases ?? []);
  socketHandover.inherit(start.inherited ?? []);
  try {
    await app.start();
  } catch (err) {
    socketHandover.abandon();
    await app.shutdown(0);
    throw err;
  }
  rpc.note(STARTED_NOTE, { app: app.ports, hbone: app.hbone.ports });
}

if (!isMainThread && (workerData as Partial<WorkerStart> | null)?.weftWorker === true) {
  // A worker that cannot start throws out of the thread: the primary sees the error event and the exit.
  await main(workerData as WorkerStart);
}
