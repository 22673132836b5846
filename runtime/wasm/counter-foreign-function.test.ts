// weft.counter.add over the memory backend: counts per plugin and name within a window, answers asynchronously with
// the call's id, refuses bad input at once, and reports a failing backend as a routable error.
import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../shared-state/state-memory.js';
import type { StateBackend } from '../shared-state/state-backend.js';
import { ForeignFunctionRegistry } from './foreign-function.js';
import { COUNTER_ADD_FUNCTION, registerCounterForeignFunction } from './counter-foreign-function.js';

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const dec = (b: Uint8Array): Record<string, unknown> => JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>;

function setup(backend: StateBackend = new MemoryBackend()) {
  const registry = new ForeignFunctionRegistry();
  registerCounterForeignFunction(registry, backend);
  const fn = registry.lookup(COUNTER_ADD_FUNCTION)!.fn;
  return (payload: unknown, plugin = 'p') => fn(enc(payload), { pluginName: plugin, contextId: 9 });
}

describe('weft.counter.add', () => {
  it('adds within a window per plugin and name, answering later with the id and the new value', async () => {
    const add = setup();
    const first = add({ id: 1, name: 'logins:alice', delta: 1, windowMs: 60_000 });
    expect(first).toBeInstanceOf(Promise);
    expect(dec(await first)).toMatchObject({ id: 1, context: 9, value: 1 });
    expect(dec(await add({ id: 2, name: 'logins:alice', delta: 4, windowMs: 60_000 }))).toMatchObject({ id: 2, value: 5 });
    const read = dec(await add({ id: 3, name: 'logins:alice', delta: 0, windowMs: 60_000 }));
    expect(read.value).toBe(5);
    expect(read.resetMs as number).toBeGreaterThan(0);
    expect(read.resetMs as number).toBeLessThanOrEqual(60_000);
    expect(dec(await add({ id: 4, name: 'logins:alice', windowMs: 60_000 }, 'other-plugin'))).toMatchObject({ value: 1 });
    expect(dec(await add({ id: 5, name: 'logins:bob', windowMs: 60_000 }))).toMatchObject({ value: 1 });
  });

  it.each([
    ['not JSON', '{'],
    ['no name', { windowMs: 60_000 }],
    ['a negative delta', { name: 'a', delta: -1, windowMs: 60_000 }],
    ['a fractional delta', { name: 'a', delta: 1.5, windowMs: 60_000 }],
    ['a window under a second', { name: 'a', windowMs: 10 }],
  ])('refuses %s at once', (_what, payload) => {
    const out = setup()(payload);
    expect(out).not.toBeInstanceOf(Promise);
    expect(dec(out as Uint8Array).code).toBe('WEFT_ERR_BAD_REQUEST');
  });

  it('answers a backend failure as an error carrying the call id', async () => {
    const broken = { consume: () => Promise.reject(new Error('redis down')) } as unknown as StateBackend;
    expect(dec(await setup(broken)({ id: 7, name: 'a', windowMs: 60_000 }))).toMatchObject({ id: 7, code: 'WEFT_ERR_STATE_BACKEND', error: 'counter backend failed: redis down' });
  });
});
