// `workers:` in weft.yaml: what each value means on this machine, and the clear error or warning each bad one gets.
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../config/config-load.js';
import { formatProblem } from '../config/config-problem.js';
import { resolveWorkerCount, usableCores, workerCountWarning } from './worker-count.js';

function parse(workers: string): ReturnType<typeof parseConfigText> {
  return parseConfigText(['node: a', `workers: ${workers}`].join('\n'), 'weft.yaml');
}

function problems(workers: string): string[] {
  const r = parse(workers);
  if (r.ok) throw new Error(`workers: ${workers} was accepted`);
  return r.problems.map(formatProblem);
}

describe('workers: auto | N', () => {
  it('auto is the cores the process may run on: libuv counts the CPU affinity mask, not the machine', () => {
    expect(usableCores()).toBe(os.availableParallelism());
    expect(resolveWorkerCount('auto', 3)).toEqual({ count: 3, requested: 'auto', usableCores: 3, reason: 'auto: the process may run on 3 cores (CPU affinity)' });
    expect(resolveWorkerCount('auto', 1).count).toBe(1);
    expect(resolveWorkerCount(2, 8)).toMatchObject({ count: 2, reason: 'workers: 2 from the config' });
  });

  it.each(['0', '-2', '1.5', 'many', '"4"', 'true'])('workers: %s is refused with its line', (value) => {
    expect(problems(value)).toEqual(['weft.yaml:2:10: workers: expected "auto" or a whole number of event loops, 1 or more (e.g. workers: 2)']);
  });

  it('accepts auto and positive counts', () => {
    for (const v of ['auto', '1', '2']) expect(parse(v).ok).toBe(true);
  });

  it('accepts a count above the usable cores, with a warning at its line', () => {
    const above = usableCores() + 1;
    const r = parse(String(above));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.workers).toBe(above);
    expect((r.warnings ?? []).map(formatProblem)).toEqual([`weft.yaml:2:10: workers: ${workerCountWarning(above)}`]);
    expect(workerCountWarning(above)).toContain(`more than the ${usableCores()} core`);
    expect(parse(String(usableCores())).ok && (parse(String(usableCores())) as { warnings?: unknown }).warnings).toBeUndefined();
  });
});
