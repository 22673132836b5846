/**
 * The primary thread of a multi-worker weft: starts N worker threads (each a whole App accepting on its own SO_REUSEPORT
 * sockets; no connection or byte passes through here), compiles plugins once for all of them, owns breaker state and
 * the access-log stream, serves admin/metrics/readiness for the process, applies reloads to all workers or none,
 * drains them all, and replaces a worker that dies.
 */
import { Worker } from 'node:worker_threads';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { WeftConfig } from '../config/config-schema.js';
import { DEFAULT_PORTS } from '../config/defaults.js';
import { createLogger, logLevels } from '../log.js';
import { WeftError } from '../errors.js';
import { ProxyState } from '../state/proxy-state.js';
import type { WorkloadChange } from '../state/state-snapshot.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { AccessLogSink } from '../telemetry/access-log.js';
import { startHttpEndpoint, type HttpEndpoint } from '../admin/http-endpoint.js';
import { adminRoutes, metricsRoutes, readinessRoutes, type AdminSources } from '../admin/admin-routes.js';
import { SharedCounterTable } from '../shared-state/shared-counter-table.js';
import { MemoryBackend } from '../shared-state/state-memory.js';
import type { CompiledPlugin } from '../wasm/plugin-vm.js';
import type { SharedCaRoot } from '../identity/ca-client-from-config.js';
import { WorkerRpc } from './worker-rpc.js';
import { BREAKER_CHANGE_NOTE, BREAKER_RPC, serveBreakers } from './process-memory-backend.js';
import { CA_ROOT_RPC, HANDOVER_COMMIT_RPC, HANDOVER_LEND_RPC, LOG_LEVELS_NOTE, LOG_NOTE, PATCH_RPC, STARTED_NOTE, STOP_ACCEPTING_RPC, type WorkerDump, type WorkerStart } from './worker-thread.js';
import { renderAggregated } from './worker-metrics.js';
import type { WorkerCount } from './worker-count.js';
import { PluginPrecompiler } from './plugin-precompiler.js';
import { inheritedPorts, pinAliases, pinPorts, pinnedLocalPort, type PortPins, type StartedPorts } from './pin-ports.js';
import { PodFanout } from '../inpod/pod-fanout.js';
import { duplicateFd, socketHandover, type HandoverSocket } from '../upgrade/socket-handover.js';
import type { HandoverSockets } from '../upgrade/hot-upgrade.js';
import { loadNativeSocket } from '../native/weft-socket.js';
import { shareOut } from './share-out.js';

const log = createLogger('workers');
/** A worker that keeps dying is restarted after a growing pause, capped here. */
const MAX_RESTART_DELAY_MS = 5_000;
/** The primary's own endpoints: their inherited sockets stay on this thread; every other one goes to a worker. */
const PRIMARY_ENDPOINTS = new Set(['admin', 'metrics', 'readiness']);
/** How long a drained worker thread may take to end once terminated. */
const TERMINATE_WAIT_MS = 2_000;

export interface WorkerPrimaryOptions {
  count: WorkerCount;
  accessLogSink?: AccessLogSink;
  onQuit?: () => void;
}

interface Slot {
  id: number;
  worker: Worker;
  rpc: WorkerRpc;
  ready: boolean;
  ports: StartedPorts | undefined;
  /** Which of the primary's configuration generations this worker holds (see #generation). */
  generation: number;
}

type ApplyResult = { ok: true; ports: StartedPorts } | { ok: false; problems: string[]; ports?: StartedPorts };

export class WorkerPrimary {
  readonly state: ProxyState;
  readonly metrics = new MetricsRegistry();
  readonly count: WorkerCount;
  readonly #opts: WorkerPrimaryOptions;
  readonly #slots: (Slot | undefined)[] = [];
  readonly #counters = new SharedCounterTable();
  readonly #breakers = new MemoryBackend();
  readonly #breakerService;
  readonly #precompiler = new PluginPrecompiler();
  readonly #endpoints: HttpEndpoint[] = [];
  readonly #reloads;
  readonly #exits;
  readonly #running;
  readonly #logStream: WriteStream | undefined;
  readonly #restarts = new Map<number, number>();
  readonly #pins: PortPins = new Map();
  /** The config every worker runs, with port 0 replaced by the port the first worker got (all must share it). */
  #pinned: WeftConfig;
  /** Patches applied since #pinned was made (it then lacks their workloads). */
  #pinnedStale = false;
  /**
   * Counts the changes every worker must follow (each patch, each reload), so a worker's own count says what it holds: a
   * patch goes only to a worker one step behind it, and one further behind (it was starting, or a patch failed) is sent
   * the whole current configuration instead. Without it, a worker spawned before a patch and started after it missed it.
   */
  #generation = 0;
  #compiled: Record<string, CompiledPlugin> = {};
  #caRoot: Promise<SharedCaRoot> | undefined;
  #started = false;
  #stopping = false;
  /** After shutdown: a worker thread did not end (the process must exit without joining it). */
  threadsLeft = false;
  /** A successor took the sockets over (readiness is its now). */
  #handedOver = false;
  #applying: Promise<unknown> = Promise.resolve();
  /** Conditions besides running workers, such as the Kubernetes source's first full sync (as App.addReadinessGate). */
  readonly #readinessGates: (() => boolean)[] = [];
  /** /config_dump sections the primary itself owns (the Kubernetes source's, for one), next to the workers'. */
  readonly #ownSections = new Map<string, () => unknown>();
  /** In-pod capture: the one ZDS client, fanning each pod out to every worker. */
  #inpod: PodFanout | undefined;

  constructor(config: WeftConfig, opts: WorkerPrimaryOptions) {
    this.state = new ProxyState(config);
    this.#pinned = config;
    this.#opts = opts;
    this.count = opts.count;
    this.#reloads = this.metrics.counter('weft_config_reloads_total', 'Configuration reloads by result', ['result']);
    this.#exits = this.metrics.counter('weft_worker_exits_total', 'Worker threads that ended while serving (each is replaced)', ['reason']);
    this.#running = this.metrics.gauge('weft_workers', 'Worker threads (event loops) by state', ['state']);
    this.metrics.gauge('weft_build_info', 'weft build information', ['version', 'node_version']).set({ version: '0.1.0', node_version: process.version }, 1);
    this.#breakerService = serveBreakers(this.#breakers, (record) => {
      for (const s of this.#slots) s?.rpc.note(BREAKER_CHANGE_NOTE, record);
    });
    const path = config.accessLog.path;
    if (opts.accessLogSink === undefined && path !== undefined) {
      this.#logStream = createWriteStream(path, { flags: 'a' });
      this.#logStream.on('error', () => {
        // A full disk must not take the data path down; lines are dropped instead.
      });
    }
  }

  get ready(): boolean {
    return this.#started && !this.#stopping && !this.#handedOver && this.#slots.some((s) => s?.ready === true) && this.#readinessGates.every((gate) => gate());
  }

  addReadinessGate(gate: () => boolean): void {
    this.#readinessGates.push(gate);
  }

  addDumpSection(name: string, section: () => unknown): void {
    this.#ownSections.set(name, section);
  }

  /** Ports as App.ports reports them (from the first worker: all share them), plus the primary's endpoints. */
  get ports(): Record<string, unknown> & { localPorts: Record<string, number | undefined> } {
    const first = this.#slots[0]?.ports?.app ?? this.#slotPortsFallback();
    const localPorts = Object.fromEntries(this.state.current.config.localPorts.map((lp) => [lp.listen, pinnedLocalPort(this.#pins, lp.listen)]));
    return { ...first, localPorts, admin: this.#endpoints[0]?.port, metrics: this.#endpoints[1]?.port, readiness: this.#endpoints[2]?.port };
  }

  #slotPortsFallback(): Record<string, unknown> {
    return this.#slots.find((s) => s?.ports !== undefined)?.ports?.app ?? {};
  }

  async start(): Promise<void> {
    const config = this.state.current.config;
    const compiled = await this.#precompiler.compile(config);
    if (!compiled.ok) throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `cannot start: ${compiled.problems.join('; ')}`);
    this.#compiled = compiled.compiled;
    // A hot upgrade: the predecessor's sockets (one per its worker and listener) are shared out among the workers, and
    // port-0 addresses are pinned to the ports they are bound to before any worker starts.
    const inherited = socketHandover.extract((r) => !PRIMARY_ENDPOINTS.has(r.key.slice(0, r.key.indexOf(' '))));
    const initial = inherited.length === 0 ? config : pinPorts(config, this.#pins, inheritedPorts(config, (key) => inherited.find((s) => s.record.key === key)?.record.port));
    const shares = shareOut(inherited, this.count.count, duplicateFd);
    const first = await this.#spawn(0, initial, shares[0]);
    this.#pinned = pinPorts(config, this.#pins, first);
    await Promise.all(Array.from({ length: this.count.count - 1 }, (_, i) => this.#spawn(i + 1, this.#pinned, shares[i + 1])));
    // The first worker learned the port-0 ports; it takes the pinned config (rebinding only port-0 local ports) before
    // anyone can know those ports, so every worker runs the same configuration.
    if (JSON.stringify(this.#pinned) !== JSON.stringify(initial)) {
      const pinnedFirst = await this.#apply(0, this.#pinned);
      if (!pinnedFirst.ok) throw new WeftError('WEFT_ERR_WORKER', `worker 0 could not take the pinned ports: ${pinnedFirst.problems.join('; ')}`);
    }
    if (config.inpod !== undefined) this.#startInpod(config.inpod);
    const sources: AdminSources = {
      state: this.state,
      metrics: { render: () => this.renderMetrics().then((r) => r.text), contentType: this.metrics.contentType },
      isReady: () => this.ready,
      listeners: () => this.ports,
      quit: () => this.#opts.onQuit?.(),
      dumpSections: () => this.#dumpSections(),
      logLevelsChanged: (levels) => {
        for (const slot of this.#slots) slot?.rpc.note(LOG_LEVELS_NOTE, levels);
      },
    };
    const endpoint = (name: string, address: string | undefined, fallback: string, routes: Parameters<typeof startHttpEndpoint>[2]) => startHttpEndpoint(name, address ?? fallback, routes);
    this.#endpoints.push(await endpoint('admin', config.listeners.admin, `127.0.0.1:${DEFAULT_PORTS.admin}`, adminRoutes(sources)));
    this.#endpoints.push(await endpoint('metrics', config.listeners.metrics, `0.0.0.0:${DEFAULT_PORTS.metrics}`, metricsRoutes(sources)));
    this.#endpoints.push(await endpoint('readiness', config.listeners.readiness, `0.0.0.0:${DEFAULT_PORTS.readiness}`, readinessRoutes(sources)));
    this.#started = true;
    log.info({ node: config.node, workers: this.count.count, why: this.count.reason, ports: this.ports }, 'weft started');
  }

  #startInpod(config: NonNullable<WeftConfig['inpod']>): void {
    const inpod = new PodFanout(config, {
      live: () => this.#slots.flatMap((s) => (s?.ready === true ? [s.id] : [])),
      call: (id, method, payload) => {
        const slot = this.#slots[id];
        return slot?.ready === true ? slot.rpc.call(method, payload) : Promise.reject(new WeftError('WEFT_ERR_WORKER', `worker ${id} is not running`));
      },
    });
    this.#inpod = inpod;
    // As ztunnel: not ready until the agent's snapshot is applied, nor while its connection is down.
    this.addReadinessGate(() => inpod.zds.state === 'synced');
    this.addDumpSection('inpod', () => inpod.dump());
    inpod.start();
  }

  /** Starts worker `id` with `config`; resolves with its ports once it serves, rejects if it fails to start. */
  #spawn(id: number, config: WeftConfig, inherited: HandoverSocket[] = [], generation = this.#generation): Promise<StartedPorts> {
    const start: WorkerStart = {
      weftWorker: true,
      id,
      config,
      counters: this.#counters.buffer,
      compiled: this.#compiled,
      sharedCa: usesEmbeddedCa(config),
      logLevels: logLevels(),
      inherited,
      handoverAliases: pinAliases(this.#pins),
    };
    const worker = spawnWorkerThread(start);
    const rpc = new WorkerRpc(worker);
    const slot: Slot = { id, worker, rpc, ready: false, ports: undefined, generation };
    this.#slots[id] = slot;
    rpc.handle(LOG_NOTE, (lines) => this.#writeLog(lines as string | Uint8Array));
    rpc.handle(BREAKER_RPC, this.#breakerService.answer);
    rpc.handle(CA_ROOT_RPC, () => (this.#caRoot ??= generateCaRoot(this.state.current.config.trustDomain)));
    return new Promise<StartedPorts>((resolve, reject) => {
      let failure: Error | undefined;
      rpc.handle(STARTED_NOTE, (payload) => {
        slot.ready = true;
        slot.ports = payload as StartedPorts;
        this.#running.set({ state: 'running' }, this.#slots.filter((s) => s?.ready === true).length);
        void this.#inpod?.workerStarted(id);
        // Changes made while it started went only to the running workers: it catches up before the next change.
        if (slot.generation < this.#generation) void this.#enqueue(() => this.#catchUp(slot));
        resolve(slot.ports);
      });
      worker.on('error', (err: Error) => {
        failure = err;
        log.error({ worker: id, error: err.message }, 'worker thread failed');
      });
      worker.once('exit', (code) => {
        rpc.fail(`worker ${id} exited`);
        const wasReady = slot.ready;
        slot.ready = false;
        this.#running.set({ state: 'running' }, this.#slots.filter((s) => s?.ready === true).length);
        if (!wasReady) return reject(new WeftError('WEFT_ERR_WORKER', `worker ${id} could not start: ${failure?.message ?? `exit code ${code}`}`, { cause: failure }));
        if (this.#stopping || this.#slots[id] !== slot) return;
        this.#exits.inc({ reason: failure === undefined ? `exit ${code}` : 'error' });
        this.#replace(id, failure?.message ?? `exit code ${code}`);
      });
    });
  }

  /** A worker died while serving: the others keep their listeners (the kernel stops routing to the dead one's); start a new one. */
  #replace(id: number, why: string): void {
    const restarts = (this.#restarts.get(id) ?? 0) + 1;
    this.#restarts.set(id, restarts);
    const delayMs = Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (restarts - 1));
    log.error({ worker: id, why, restarts, delayMs }, 'worker thread died; starting a replacement');
    const timer = setTimeout(() => {
      if (this.#stopping) return;
      const generation = this.#generation;
      this.#spawn(id, this.#current(), [], generation).then(
        () => log.info({ worker: id }, 'replacement worker serving'),
        (err: unknown) => {
          // Keep trying with the growing pause: the other workers serve meanwhile.
          log.error({ worker: id, error: (err as Error).message }, 'replacement worker failed to start');
          if (!this.#stopping) this.#replace(id, (err as Error).message);
        },
      );
    }, delayMs);
    timer.unref();
  }

  /** Kills worker `id` (tests and `/workers/kill`-style fault injection): it is replaced like any worker that dies. */
  async terminateWorker(id: number): Promise<void> {
    await this.#slots[id]?.worker.terminate();
  }

  /** Resolves once worker `id` serves again (after a replacement). */
  async waitForWorker(id: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#slots[id]?.ready !== true) {
      if (Date.now() > deadline) throw new WeftError('WEFT_ERR_WORKER', `worker ${id} is not serving after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async #apply(id: number, config: WeftConfig): Promise<ApplyResult> {
    const slot = this.#slots[id];
    if (slot === undefined || !slot.ready) return { ok: false, problems: [`worker ${id} is not running`] };
    try {
      return await slot.rpc.call<ApplyResult>('apply', { config, compiled: this.#compiled });
    } catch (err) {
      return { ok: false, problems: [`worker ${id}: ${(err as Error).message}`] };
    }
  }

  /**
   * Applies `config` to every worker or to none: plugins are fetched, verified and compiled here first; the first
   * worker applies (learning any new port-0 local port), then the rest; if any refuses, those that applied go back
   * to the previous configuration and the reload is rejected.
   */
  reload(config: WeftConfig): Promise<{ ok: true } | { ok: false; problems: string[] }> {
    return this.#enqueue(() => this.#reload(config));
  }

  /** Reloads, patches and catch-ups run one at a time, in the order they were asked for. */
  #enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#applying.then(step);
    this.#applying = run.catch(() => undefined);
    return run;
  }

  /** Sends a worker that fell behind (it started after changes were sent) the whole current configuration. */
  async #catchUp(slot: Slot): Promise<void> {
    if (this.#slots[slot.id] !== slot || !slot.ready || slot.generation >= this.#generation) return;
    const generation = this.#generation;
    const r = await this.#apply(slot.id, this.#current());
    if (r.ok) slot.generation = generation;
    else log.error({ worker: slot.id, problems: r.problems }, 'a worker that started behind could not take the current configuration');
  }

  async #reload(config: WeftConfig): Promise<{ ok: true } | { ok: false; problems: string[] }> {
    const reject = (problems: string[]): { ok: false; problems: string[] } => {
      this.recordRejectedReload();
      log.error({ problems }, 'configuration rejected; the previous configuration keeps serving');
      return { ok: false, problems };
    };
    const compiled = await this.#precompiler.compile(config);
    if (!compiled.ok) return reject(compiled.problems);
    const previous = { config: this.#current(), compiled: this.#compiled };
    this.#compiled = compiled.compiled;
    const ids = this.#slots.flatMap((s) => (s?.ready === true ? [s.id] : []));
    const [firstId, ...rest] = ids;
    if (firstId === undefined) return reject(['no worker is running']);
    // The first worker's ports fill in port-0 addresses; pinning with the previous ports keeps known ones as they are.
    const candidate = pinPorts(config, this.#pins);
    const first = await this.#apply(firstId, candidate);
    const applied = first.ok ? [firstId] : [];
    const problems = first.ok ? [] : first.problems;
    const pinned = first.ok ? pinPorts(config, this.#pins, first.ports) : candidate;
    if (first.ok) {
      const results = await Promise.all(rest.map(async (id) => ({ id, r: await this.#apply(id, pinned) })));
      for (const { id, r } of results) {
        if (r.ok) applied.push(id);
        else problems.push(...r.problems);
      }
      if (problems.length === 0 && JSON.stringify(pinned.localPorts) !== JSON.stringify(candidate.localPorts)) {
        const again = await this.#apply(firstId, pinned);
        if (!again.ok) problems.push(...again.problems);
      }
    }
    if (problems.length > 0) {
      this.#compiled = previous.compiled;
      await Promise.all(applied.map((id) => this.#apply(id, previous.config)));
      return reject(problems);
    }
    this.#pinned = pinned;
    this.#pinnedStale = false;
    this.state.update(config);
    const generation = ++this.#generation;
    for (const id of applied) {
      const slot = this.#slots[id];
      if (slot !== undefined) slot.generation = generation;
    }
    this.#reloads.inc({ result: 'applied' });
    log.info({ version: this.state.current.version, workers: applied.length }, 'configuration reloaded on every worker');
    return { ok: true };
  }

  /**
   * Applies a workload (and Service) change from the Kubernetes source without a reload: the primary's snapshot is
   * derived at once, and each worker derives its own in the same order as reloads (one queue). A worker that cannot is
   * given the whole current configuration instead, so no worker is left behind.
   */
  patchWorkloads(change: WorkloadChange): { ok: true } {
    this.state.patch(change);
    this.#pinnedStale = true;
    const generation = ++this.#generation;
    void this.#enqueue(async () => {
      const live = this.#slots.filter((s): s is Slot => s?.ready === true && s.generation < generation);
      // Only a worker one step behind can derive this change; one further behind missed a change and takes everything.
      const results = await Promise.allSettled(live.map((s) => (s.generation === generation - 1 ? s.rpc.call(PATCH_RPC, change) : Promise.reject(new Error(`worker holds generation ${s.generation}, the change is ${generation}`)))));
      for (const [i, r] of results.entries()) {
        const slot = live[i];
        if (slot === undefined) continue;
        if (r.status === 'fulfilled') {
          slot.generation = generation;
          continue;
        }
        log.warn({ worker: slot.id, error: (r.reason as Error).message }, 'worker could not derive its snapshot; sending it the whole configuration');
        await this.#catchUp(slot);
      }
    });
    return { ok: true };
  }

  /** The configuration a (re)starting or rolled-back worker gets: the last reload's, or the current one after patches. */
  #current(): WeftConfig {
    if (this.#pinnedStale) {
      this.#pinned = pinPorts(this.state.current.config, this.#pins);
      this.#pinnedStale = false;
    }
    return this.#pinned;
  }

  /**
   * The hot upgrade's view of this process (hot-upgrade.ts): every worker's listening sockets (lent as duplicates the
   * sender closes) and the primary's endpoints; commit makes the primary, then every worker, accept on inherited ones.
   */
  readonly handover: HandoverSockets = {
    lend: async () => {
      const aliases = pinAliases(this.#pins);
      const live = this.#slots.filter((s): s is Slot => s?.ready === true);
      const lent = await Promise.allSettled(live.map((s) => s.rpc.call<HandoverSocket[]>(HANDOVER_LEND_RPC, { aliases })));
      const duplicates = lent.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      const release = (): void => {
        for (const d of duplicates) loadNativeSocket()?.closeFd?.(d.fd);
      };
      const failed = lent.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) {
        release();
        throw failed.reason;
      }
      return { sockets: [...socketHandover.held(), ...duplicates], release };
    },
    commit: async () => {
      // One after the other, the primary first: a process that dies at its first adoption has accepted nothing yet.
      await socketHandover.commit();
      let closed = socketHandover.discardUnused();
      for (const slot of this.#slots) if (slot !== undefined) closed += await slot.rpc.call<number>(HANDOVER_COMMIT_RPC);
      return closed;
    },
  };

  /** A successor serves the sockets now: every worker stops accepting (GOAWAY, `connection: close`), then the endpoints. */
  async stopAccepting(handedOver: boolean): Promise<void> {
    this.#handedOver ||= handedOver;
    const live = this.#slots.filter((s): s is Slot => s?.ready === true);
    await Promise.all(live.map((s) => s.rpc.call(STOP_ACCEPTING_RPC).catch(() => undefined)));
    if (handedOver) for (const e of this.#endpoints) e.stopAccepting();
  }

  recordRejectedReload(): void {
    this.#reloads.inc({ result: 'rejected' });
  }

  async renderMetrics(): Promise<{ text: string; contentType: string }> {
    const live = this.#slots.filter((s): s is Slot => s?.ready === true);
    const perWorker = await Promise.all(live.map((s) => s.rpc.call<Awaited<ReturnType<MetricsRegistry['registry']['getMetricsAsJSON']>>>('metrics').catch(() => [])));
    return renderAggregated(perWorker, await this.metrics.registry.getMetricsAsJSON());
  }

  async #dumpSections(): Promise<Record<string, unknown>> {
    const live = this.#slots.filter((s): s is Slot => s?.ready === true);
    const dumps = await Promise.all(live.map((s) => s.rpc.call<WorkerDump>('dump').catch(() => undefined)));
    const threads = dumps.filter((d): d is WorkerDump => d !== undefined);
    return {
      ...(threads[0]?.sections ?? {}),
      ...Object.fromEntries([...this.#ownSections].map(([k, f]) => [k, f()])),
      workers: {
        count: this.count.count,
        requested: this.count.requested,
        usableCores: this.count.usableCores,
        reason: this.count.reason,
        running: threads.length,
        exits: Object.fromEntries([...this.#restarts]),
        threads: threads.map(({ sections: _s, ...t }) => t),
      },
    };
  }

  /** A worker's batch of lines: text (L4 lines), or the L7 log's bytes, written as they came. */
  #writeLog(lines: string | Uint8Array): void {
    const sink = this.#opts.accessLogSink;
    if (sink !== undefined) {
      const text = typeof lines === 'string' ? lines : Buffer.from(lines.buffer, lines.byteOffset, lines.byteLength).toString('utf8');
      for (const line of text.split('\n')) if (line !== '') sink(line);
    } else if (this.#logStream !== undefined) this.#logStream.write(lines);
    else process.stdout.write(lines);
  }

  /** Drains every worker (each stops accepting, gives open connections the deadline, closes the rest), then stops. */
  async shutdown(deadlineMs = this.state.current.config.limits.drainDeadlineMs): Promise<{ forced: number }> {
    this.#stopping = true;
    this.#inpod?.stop();
    const live = this.#slots.filter((s): s is Slot => s !== undefined);
    const results = await Promise.all(live.map((s) => (s.ready ? s.rpc.call<{ forced: number }>('drain', { deadlineMs }).catch(() => ({ forced: 0 })) : Promise.resolve({ forced: 0 }))));
    // Drained threads end at once; one stuck in Node's environment teardown (runtime/upgrade/README.md) is left to the
    // process exit (threadsLeft), not waited for here.
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      Promise.all(live.map((s) => s.worker.terminate())).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), TERMINATE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!ended) {
      this.threadsLeft = true;
      log.warn({ waitedMs: TERMINATE_WAIT_MS }, 'a drained worker thread did not end; the process exits without waiting for it');
    }
    this.#inpod?.close();
    await Promise.all(this.#endpoints.map((e) => e.close()));
    this.#breakerService.stop();
    this.#precompiler.close();
    const stream = this.#logStream;
    if (stream !== undefined) await new Promise((resolve) => stream.end(resolve));
    const forced = results.reduce((n, r) => n + r.forced, 0);
    log.info({ forced, workers: live.length }, 'weft stopped');
    return { forced };
  }
}

/** Whether the config leaves the CA to weft's embedded one with an in-memory root (no caAddress, root files or caDir). */
function usesEmbeddedCa(config: WeftConfig): boolean {
  const id = config.identity;
  return id.caAddress === undefined && id.rootCertFile === undefined && id.caDir === undefined;
}

/** The one in-memory root of the process, made on the first worker's first certificate. */
async function generateCaRoot(trustDomain: string): Promise<SharedCaRoot> {
  const { CertificateAuthority } = await import('../identity/certificate-authority.js');
  return CertificateAuthority.generate(trustDomain).exportRoot();
}

/** A worker thread running worker-thread.ts: compiled JS directly, TypeScript sources (tests) through tsx's loader. */
function spawnWorkerThread(start: WorkerStart): Worker {
  const entry = new URL(`./worker-thread.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);
  if (!entry.href.endsWith('.ts')) return new Worker(entry, { workerData: start });
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`, { eval: true, workerData: start });
}

export async function createWorkerPrimary(config: WeftConfig, opts: WorkerPrimaryOptions): Promise<WorkerPrimary> {
  const primary = new WorkerPrimary(config, opts);
  try {
    await primary.start();
  } catch (err) {
    await primary.shutdown(0);
    throw err;
  }
  return primary;
}
