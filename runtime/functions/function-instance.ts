/**
 * One function instance on the main thread's side: its worker thread, the port the worker reads synchronously, and
 * its OS thread id for CPU accounting. It knows nothing of requests; the pool and the exchange drive it.
 */
import { readFileSync } from 'node:fs';
import { MessageChannel, Worker } from 'node:worker_threads';
import { WakingPort } from './blocking-port.js';
import type { CompiledFunction } from './component-admission.js';
import type { FromWorker, ToWorker } from './function-messages.js';
import type { InstanceData } from './function-worker.js';

const WORKER_URL = new URL(`./function-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

export type InstanceState = 'starting' | 'idle' | 'busy' | 'dead';

export class FunctionInstance {
  readonly worker: Worker;
  readonly port: WakingPort<ToWorker>;
  state: InstanceState = 'starting';
  /** Requests served, for maxRequestsPerInstance. */
  served = 0;
  /**
   * Recycling: `successor-starting` once it reached maxRequestsPerInstance (it keeps serving while its successor starts,
   * so no request waits for that start), `now` once the successor is up (it goes after its current request).
   */
  recycle: 'no' | 'successor-starting' | 'now' = 'no';
  memoryBytes = 0;
  tid = 0;
  idleTimer: NodeJS.Timeout | undefined;
  /** Where worker messages go while a request runs (set by the exchange). */
  onMessage: ((m: FromWorker) => void) | undefined;

  constructor(compiled: CompiledFunction, env: [string, string][], onReady: (ok: true | string) => void, onDeath: (reason: string) => void) {
    const channel = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    const data: InstanceData = { jsUrl: compiled.jsUrl, modules: compiled.modules, env, port: channel.port2, signal, memoryCapBytes: compiled.memoryCapBytes };
    const options = {
      workerData: data,
      transferList: [channel.port2],
      // The JS glue's own heap; the guest's linear memory is capped in the module (memory-cap.ts).
      resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    };
    this.worker = import.meta.url.endsWith('.ts')
      ? new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}); })`, { ...options, eval: true })
      : new Worker(WORKER_URL, options);
    this.port = new WakingPort(channel.port1, new Int32Array(signal));
    this.worker.on('message', (m: FromWorker) => {
      if (m.t === 'ready') {
        this.tid = m.tid;
        this.memoryBytes = m.memoryBytes;
        this.state = 'idle';
        onReady(true);
      } else if (m.t === 'init-failed') {
        onReady(m.message);
      } else this.onMessage?.(m);
    });
    this.worker.on('error', (err: NodeJS.ErrnoException) => {
      onDeath(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'memory' : `exit: ${err.message}`);
    });
    this.worker.on('exit', () => {
      if (this.state !== 'dead') onDeath('exit');
    });
  }

  send(message: ToWorker, transfer?: ArrayBuffer[]): void {
    if (this.state !== 'dead') this.port.post(message, transfer);
  }

  /** CPU time of the worker's thread in ms (Linux /proc schedstat: ns on CPU), or undefined when unreadable. */
  cpuMs(): number | undefined {
    if (this.tid === 0) return undefined;
    try {
      return Number(readFileSync(`/proc/self/task/${this.tid}/schedstat`, 'latin1').split(' ', 1)[0]) / 1e6;
    } catch {
      return undefined;
    }
  }

  kill(): void {
    if (this.state === 'dead') return;
    this.state = 'dead';
    clearTimeout(this.idleTimer);
    this.onMessage = undefined;
    this.port.close();
    void this.worker.terminate();
  }
}
