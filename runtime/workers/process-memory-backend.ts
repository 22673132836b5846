/**
 * The memory backend as one state for the whole process when several worker threads serve it: rate-limit decisions run
 * in the worker on the shared counter table (no message per request), breaker records live in the primary thread's
 * MemoryBackend and are reached by message (breakers flush every 100 ms, not per request), with changes pushed back.
 */
import type { WorkerRpc } from './worker-rpc.js';
import { MemoryBackend, MemoryStore } from '../shared-state/state-memory.js';
import type { SharedCounterTable } from '../shared-state/shared-counter-table.js';
import type { BreakerFlushResult, BreakerListener, BreakerProbeResult, BreakerRecord, BreakerThresholds, StateBackend } from '../shared-state/state-backend.js';

export const BREAKER_RPC = 'breaker';
export const BREAKER_CHANGE_NOTE = 'breaker-change';

type BreakerMethod = 'breakerFlush' | 'breakerGet' | 'breakerAcquireProbe' | 'breakerProbeResult';
const BREAKER_METHODS: readonly BreakerMethod[] = ['breakerFlush', 'breakerGet', 'breakerAcquireProbe', 'breakerProbeResult'];

export interface BreakerCall {
  method: BreakerMethod;
  args: unknown[];
}

/** The primary's side: answers workers' breaker calls from `backend` and pushes every transition to `broadcast`. */
export function serveBreakers(backend: MemoryBackend, broadcast: (record: BreakerRecord) => void): { answer: (payload: unknown) => Promise<unknown>; stop: () => void } {
  const stop = backend.onBreakerChange(broadcast);
  const answer = (payload: unknown): Promise<unknown> => {
    const call = payload as BreakerCall;
    if (!BREAKER_METHODS.includes(call.method)) return Promise.reject(new Error(`unknown breaker method "${String(call.method)}"`));
    return (backend[call.method] as (...a: unknown[]) => Promise<unknown>).apply(backend, call.args);
  };
  return { answer, stop };
}

/** A worker's backend: the MemoryBackend's limit fast path on the process-wide table, breakers forwarded to the primary. */
export class ProcessMemoryBackend extends MemoryBackend implements StateBackend {
  readonly #rpc: WorkerRpc;
  readonly #listeners = new Set<BreakerListener>();

  constructor(table: SharedCounterTable, rpc: WorkerRpc) {
    super(new MemoryStore(undefined, table));
    this.#rpc = rpc;
    rpc.handle(BREAKER_CHANGE_NOTE, (record) => {
      for (const l of this.#listeners) l(record as BreakerRecord);
    });
  }

  #call<T>(method: BreakerMethod, args: unknown[]): Promise<T> {
    return this.#rpc.call<T>(BREAKER_RPC, { method, args } satisfies BreakerCall);
  }

  override breakerFlush(name: string, node: string, successes: number, failures: number, thresholds: BreakerThresholds): Promise<BreakerFlushResult> {
    return this.#call('breakerFlush', [name, node, successes, failures, thresholds]);
  }

  override breakerGet(names: readonly string[]): Promise<BreakerRecord[]> {
    return this.#call('breakerGet', [names]);
  }

  override breakerAcquireProbe(name: string, owner: string, ttlMs: number): Promise<BreakerProbeResult> {
    return this.#call('breakerAcquireProbe', [name, owner, ttlMs]);
  }

  override breakerProbeResult(name: string, owner: string, success: boolean, requiredSuccesses: number, openMs: number): Promise<BreakerRecord> {
    return this.#call('breakerProbeResult', [name, owner, success, requiredSuccesses, openMs]);
  }

  override onBreakerChange(listener: BreakerListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
