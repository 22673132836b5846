// The clock hostcalls' number path: a u64 written from a double is exactly that value's BigInt, and the clock is now.
import { describe, expect, it } from 'vitest';
import { GuestMemory } from './guest-memory.js';
import { epochNanos } from './epoch-nanos.js';

describe('epochNanos / GuestMemory.writeU64Number', () => {
  const memory = (): GuestMemory => new GuestMemory(new WebAssembly.Memory({ initial: 1 }));

  it('writes the exact u64 of integer-valued doubles, below and past 2^53', () => {
    const mem = memory();
    for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 1.7e18, 1765000000000000000, 2 ** 63, 2 ** 64 - 2048]) {
      expect(mem.writeU64Number(8, v)).toBe(0);
      expect(mem.view.getBigUint64(8, true)).toBe(BigInt(v));
    }
  });

  it('refuses an out-of-bounds pointer', () => {
    expect(memory().writeU64Number(65536 - 4, 1)).not.toBe(0);
  });

  it('reads the wall clock in nanoseconds', () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const now = BigInt(epochNanos());
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    expect(now >= before - 1_000_000n && now <= after).toBe(true);
  });
});
