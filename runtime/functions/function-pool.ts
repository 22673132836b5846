/**
 * The serverless lifecycle of one function: instances started on demand (cold or warm-cold start), reused up to
 * maxRequestsPerInstance, capped at maxInstances with a bounded, timed queue behind them (503 past it), dropped
 * after idleTimeoutMs (scale to zero), and the compiled module dropped after moduleIdleTimeoutMs without instances.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FunctionConfig } from '../config/function-config-schema.js';
import type { Logger } from '../log.js';
import type { CompiledFunction } from './component-admission.js';
import { failingExchange, localAnswer, runExchange, type Exchange } from './function-exchange.js';
import { FunctionInstance } from './function-instance.js';
import type { FromWorker, ToWorker } from './function-messages.js';
import type { FunctionMetrics } from './function-metrics.js';

/**
 * CPU budget floor of an instance's first request: V8 compiles the guest's Wasm functions lazily on their first call, and
 * a SpiderMonkey-sized guest spends tens to hundreds of ms there. With the 50 ms default the first request could finish
 * its answer and then be killed for CPU, discarding the instance it had just warmed.
 */
const FIRST_REQUEST_CPU_MS = 1000;

interface Waiter {
  req: IncomingMessage;
  res: ServerResponse;
  timer: NodeJS.Timeout;
}

export interface PoolDeps {
  metrics: FunctionMetrics;
  logger: Logger;
  /** Loads the compiled module again after it was dropped (from the disk cache: no transpile). */
  recompile: () => Promise<CompiledFunction>;
  /** Outbound wasi:http messages of a request; `reply` posts answers to the instance that asked. */
  outbound: (fn: FunctionConfig, m: Extract<FromWorker, { t: 'out-req' | 'out-body' | 'out-end' | 'out-drop' | 'out-ack' }>, reply: (m: ToWorker, transfer?: ArrayBuffer[]) => void) => void;
}

export class FunctionPool {
  readonly key: string;
  config: FunctionConfig;
  readonly #deps: PoolDeps;
  #compiled: CompiledFunction | undefined;
  #loading: Promise<CompiledFunction> | undefined;
  readonly #instances = new Set<FunctionInstance>();
  readonly #active = new Map<FunctionInstance, Exchange>();
  readonly #queue: Waiter[] = [];
  /** Instances starting, and whether each is the first since the module was (re)compiled. */
  #starting = 0;
  /** Starts still loading the module (not yet in #instances): they count against maxInstances too. */
  #loadingStarts = 0;
  #moduleTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(key: string, config: FunctionConfig, compiled: CompiledFunction, deps: PoolDeps) {
    this.key = key;
    this.config = config;
    this.#compiled = compiled;
    this.#deps = deps;
    deps.metrics.modulesLoaded.set({ fn: key }, 1);
    deps.metrics.instances.set({ fn: key }, 0);
    deps.metrics.queueDepth.set({ fn: key }, 0);
    this.#armModuleTimer();
  }

  get instances(): number {
    return this.#instances.size;
  }

  get moduleLoaded(): boolean {
    return this.#compiled !== undefined;
  }

  get sha256(): string | undefined {
    return this.#compiled?.sha256;
  }

  dispatch(req: IncomingMessage, res: ServerResponse): void {
    if (this.#closed) return localAnswer(res, 503, 'WEFT_ERR_FN_OVERLOADED', `function ${this.key} is being replaced; retry`);
    for (const inst of this.#instances) {
      if (inst.state === 'idle') return this.#run(inst, req, res);
    }
    const limits = this.config.limits;
    if (this.#queue.length >= limits.maxQueue && this.#instances.size >= limits.maxInstances) return this.#reject(res, 'overloaded', `function ${this.key} is at ${limits.maxInstances} instances with ${this.#queue.length} requests queued`);
    const timer = setTimeout(() => {
      const i = this.#queue.indexOf(waiter);
      if (i >= 0) this.#queue.splice(i, 1);
      this.#deps.metrics.queueDepth.set({ fn: this.key }, this.#queue.length);
      this.#reject(res, 'queue_timeout', `function ${this.key} had no free instance within ${limits.queueTimeoutMs} ms`);
    }, limits.queueTimeoutMs);
    const waiter: Waiter = { req, res, timer };
    this.#queue.push(waiter);
    this.#deps.metrics.queueDepth.set({ fn: this.key }, this.#queue.length);
    res.once('close', () => {
      const i = this.#queue.indexOf(waiter);
      if (i < 0) return;
      this.#queue.splice(i, 1);
      clearTimeout(timer);
      this.#deps.metrics.queueDepth.set({ fn: this.key }, this.#queue.length);
    });
    // One more instance for each queued request beyond those already starting, up to the cap.
    if (this.#planned < limits.maxInstances && this.#starting < this.#queue.length) void this.#startInstance();
  }

  #reject(res: ServerResponse, reason: 'overloaded' | 'queue_timeout', message: string): void {
    this.#deps.metrics.rejected.inc({ fn: this.key, reason });
    this.#deps.metrics.requests.inc({ fn: this.key, code: '503' });
    localAnswer(res, 503, 'WEFT_ERR_FN_OVERLOADED', message);
  }

  /** Starts an instance; with `predecessor`, its successor: the predecessor retires once this one is up (or failed). */
  async #startInstance(predecessor?: FunctionInstance): Promise<void> {
    const { metrics, logger } = this.#deps;
    this.#starting++;
    this.#loadingStarts++;
    clearTimeout(this.#moduleTimer);
    const started = performance.now();
    const kind = this.#compiled === undefined ? 'cold' : 'warm_cold';
    let compiled: CompiledFunction;
    try {
      compiled = this.#compiled ?? (await (this.#loading ??= this.#deps.recompile()));
      this.#compiled = compiled;
      this.#loading = undefined;
      metrics.modulesLoaded.set({ fn: this.key }, 1);
    } catch (err) {
      this.#loading = undefined;
      this.#starting--;
      this.#loadingStarts--;
      logger.error({ fn: this.key, err: (err as Error).message }, 'function module cannot be loaded again');
      if (predecessor !== undefined) this.#retire(predecessor);
      this.#failQueue('WEFT_ERR_FN_LOAD', `function ${this.key} cannot be loaded: ${(err as Error).message}`);
      return;
    }
    const env = Object.entries(this.config.env);
    const inst: FunctionInstance = new FunctionInstance(
      compiled,
      env,
      (ok) => {
        this.#starting--;
        if (ok !== true) {
          logger.error({ fn: this.key, err: ok }, 'function instance failed to start');
          inst.kill();
          this.#instances.delete(inst);
          this.#updateGauges();
          if (predecessor !== undefined) this.#retire(predecessor);
          this.#failQueue('WEFT_ERR_FN_TRAP', `function ${this.key} failed to start: ${ok}`);
          return;
        }
        const seconds = (performance.now() - started) / 1000;
        metrics.coldStarts.inc({ fn: this.key, kind });
        metrics.coldStartDuration.observe({ fn: this.key, kind }, seconds);
        logger.info({ fn: this.key, kind, ms: Math.round(seconds * 1000) }, 'function instance started');
        this.#updateGauges();
        if (predecessor !== undefined) this.#retire(predecessor);
        this.#next(inst);
      },
      (reason) => this.#onDeath(inst, reason),
    );
    this.#loadingStarts--;
    this.#instances.add(inst);
    this.#updateGauges();
  }

  /**
   * Instances alive or on their way. A cold start awaits the module before its instance exists; counting only
   * #instances let a burst during that wait start one instance per queued request, past maxInstances (8 of 2 in the
   * bench, each a worker instantiating SpiderMonkey at once: nothing answered for seconds).
   */
  get #planned(): number {
    return this.#instances.size + this.#loadingStarts;
  }

  /** A recycled instance whose successor is up (or could not start) goes now if idle, else after its current request. */
  #retire(inst: FunctionInstance): void {
    if (inst.state === 'idle') this.#evicted(inst, 'recycled');
    else if (inst.state !== 'dead') inst.recycle = 'now';
  }

  #failQueue(code: string, message: string): void {
    for (const w of this.#queue.splice(0)) {
      clearTimeout(w.timer);
      localAnswer(w.res, 503, code, message);
    }
    this.#deps.metrics.queueDepth.set({ fn: this.key }, 0);
  }

  #onDeath(inst: FunctionInstance, reason: string): void {
    const exchange = this.#active.get(inst);
    if (inst.state === 'starting') this.#starting--;
    inst.kill();
    this.#instances.delete(inst);
    if (exchange !== undefined) exchange.fail(failingExchange(reason));
    else this.#evicted(inst, reason === 'memory' ? 'memory' : 'exit');
    this.#updateGauges();
  }

  #evicted(inst: FunctionInstance, reason: string): void {
    inst.kill();
    this.#instances.delete(inst);
    this.#deps.metrics.evictions.inc({ fn: this.key, reason });
    this.#updateGauges();
    if (this.#instances.size === 0) this.#armModuleTimer();
    // A queued request lost its prospective instance: start another.
    if (this.#queue.length > this.#starting && this.#planned < this.config.limits.maxInstances && !this.#closed) void this.#startInstance();
  }

  /** Gives `inst` the next queued request, or parks it idle with its idle timer. */
  #next(inst: FunctionInstance): void {
    const w = this.#queue.shift();
    this.#deps.metrics.queueDepth.set({ fn: this.key }, this.#queue.length);
    if (w !== undefined) {
      clearTimeout(w.timer);
      if (w.res.destroyed) return this.#next(inst);
      return this.#run(inst, w.req, w.res);
    }
    inst.state = 'idle';
    if (this.#closed) return this.#evicted(inst, 'replaced');
    inst.idleTimer = setTimeout(() => this.#evicted(inst, 'idle'), this.config.limits.idleTimeoutMs);
  }

  #run(inst: FunctionInstance, req: IncomingMessage, res: ServerResponse): void {
    clearTimeout(inst.idleTimer);
    inst.state = 'busy';
    const started = performance.now();
    const header = req.headers['x-request-id'];
    const requestId = typeof header === 'string' && header !== '' ? header : randomUUID();
    const { logger, metrics } = this.#deps;
    const limits = this.config.limits;
    const budget = inst.served === 0 && limits.cpuMs < FIRST_REQUEST_CPU_MS ? { ...limits, cpuMs: FIRST_REQUEST_CPU_MS } : limits;
    const exchange = runExchange(inst, req, res, requestId, budget, {
      log: (stream, line) => logger.info({ fn: this.key, request_id: requestId, stream, line }, 'function output'),
      outbound: (m) => this.#deps.outbound(this.config, m, (reply, transfer) => inst.send(reply, transfer)),
      done: ({ status, failure }) => {
        this.#active.delete(inst);
        metrics.requests.inc({ fn: this.key, code: String(status) });
        metrics.duration.observe({ fn: this.key }, (performance.now() - started) / 1000);
        if (failure !== undefined) {
          logger.warn({ fn: this.key, request_id: requestId, reason: failure.reason, err: failure.message }, 'function instance discarded');
          return this.#evicted(inst, failure.reason);
        }
        inst.served++;
        this.#updateGauges();
        if (inst.recycle === 'now') return this.#evicted(inst, 'recycled');
        if (inst.served >= this.config.limits.maxRequestsPerInstance && inst.recycle === 'no' && !this.#closed) {
          // The successor starts beside it (one over maxInstances while it starts): requests keep flowing meanwhile.
          inst.recycle = 'successor-starting';
          void this.#startInstance(inst);
        }
        this.#next(inst);
      },
    });
    this.#active.set(inst, exchange);
  }

  #armModuleTimer(): void {
    clearTimeout(this.#moduleTimer);
    if (this.#closed) return;
    this.#moduleTimer = setTimeout(() => {
      if (this.#instances.size > 0 || this.#starting > 0) return;
      // Modules are shared with workers by structured clone; dropping the reference lets GC free the code.
      this.#compiled = undefined;
      this.#deps.metrics.modulesLoaded.set({ fn: this.key }, 0);
    }, this.config.limits.moduleIdleTimeoutMs);
    this.#moduleTimer.unref();
  }

  #updateGauges(): void {
    let memory = 0;
    for (const i of this.#instances) memory += i.memoryBytes;
    this.#deps.metrics.instances.set({ fn: this.key }, this.#instances.size);
    this.#deps.metrics.instanceMemory.set({ fn: this.key }, memory);
  }

  /** New limits and env apply to the next request and the next instance. */
  update(config: FunctionConfig): void {
    this.config = config;
  }

  /** Stops taking requests; running ones finish, idle instances go now, the rest as they finish. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#moduleTimer);
    this.#failQueue('WEFT_ERR_FN_OVERLOADED', `function ${this.key} was replaced; retry`);
    for (const inst of [...this.#instances]) if (inst.state === 'idle' || inst.state === 'starting') this.#evicted(inst, 'replaced');
  }

  /** Ends everything now (shutdown). */
  destroy(): void {
    this.close();
    for (const inst of [...this.#instances]) inst.kill();
    this.#instances.clear();
    this.#deps.metrics.instances.set({ fn: this.key }, 0);
    this.#deps.metrics.modulesLoaded.set({ fn: this.key }, 0);
  }
}
