import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { loadNativeSocket } from './weft-socket.js';

const addon = loadNativeSocket();

/** Committed bytes of the young generation (what an idle process keeps resident after a start-up grew it). */
function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().filter((s) => s.space_name === 'new_space').reduce((n, s) => n + s.space_size, 0);
}

/** Short-lived garbage in quantity, as module loading and config parsing make: the scavenger grows the young generation. */
function churn(): number {
  let kept = 0;
  for (let i = 0; i < 200_000; i++) kept += JSON.stringify({ i, s: 'x'.repeat(i % 64) }).length;
  return kept;
}

describe.skipIf(addon === null)('releaseMemory (weft-memory.cc)', () => {
  it("shrinks this thread's young generation back after a burst of garbage, and reports malloc_trim's answer", () => {
    expect(churn()).toBeGreaterThan(0);
    const grown = youngGenerationBytes();
    expect(typeof addon!.releaseMemory!()).toBe('boolean');
    expect(youngGenerationBytes()).toBeLessThan(grown);
  });

  it("works on a worker thread's own isolate", async () => {
    const modulePath = new URL('./build/Release/weft_socket.node', import.meta.url).pathname;
    const worker = new Worker(
      `const v8 = require('node:v8'); const { parentPort } = require('node:worker_threads');
       const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
       let kept = 0; for (let i = 0; i < 200000; i++) kept += JSON.stringify({ i, s: 'x'.repeat(i % 64) }).length;
       const grown = young(); require(${JSON.stringify(modulePath)}).releaseMemory();
       parentPort.postMessage({ kept, grown, after: young() });`,
      { eval: true },
    );
    const { kept, grown, after } = await new Promise<{ kept: number; grown: number; after: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(kept).toBeGreaterThan(0);
    expect(after).toBeLessThan(grown);
  });
});
