/** How many event loops `workers: auto | N` means on this machine: `auto` is the cores the process may run on (its CPU affinity), N is N. */
import os from 'node:os';
import type { WeftConfig } from '../config/config-schema.js';

export interface WorkerCount {
  /** Event loops to run. */
  count: number;
  /** What the config asked for. */
  requested: WeftConfig['workers'];
  /** Cores this process may use: libuv's uv_available_parallelism(), which counts sched_getaffinity's CPU set (so `taskset -c 0` gives 1). */
  usableCores: number;
  /** One sentence for /config_dump and the start-up log. */
  reason: string;
}

export function usableCores(): number {
  return os.availableParallelism();
}

export function resolveWorkerCount(requested: WeftConfig['workers'], cores = usableCores()): WorkerCount {
  if (requested === 'auto') return { count: cores, requested, usableCores: cores, reason: `auto: the process may run on ${cores} core${cores === 1 ? '' : 's'} (CPU affinity)` };
  const reason = requested > cores ? `workers: ${requested} from the config, above the ${cores} usable core${cores === 1 ? '' : 's'} (event loops will share cores)` : `workers: ${requested} from the config`;
  return { count: requested, requested, usableCores: cores, reason };
}

/** The start-up warning for a count above the usable cores; undefined when there is nothing to warn about. */
export function workerCountWarning(requested: WeftConfig['workers'], cores = usableCores()): string | undefined {
  if (requested === 'auto' || requested <= cores) return undefined;
  return `workers: ${requested} is more than the ${cores} core${cores === 1 ? '' : 's'} this process may use (CPU affinity); the extra event loops share cores and add latency`;
}
