import { describe, expect, it } from 'vitest';
import { ContextTable } from './context-table.js';

interface Rec {
  id: number;
}

describe('ContextTable', () => {
  it('agrees with a Map over random adds and removes, through growth and probe runs that wrap around', () => {
    const table = new ContextTable<Rec>();
    const model = new Map<number, Rec>();
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) >>> 0;
      return seed % n;
    };
    let nextId = 1;
    for (let step = 0; step < 20_000; step++) {
      const op = rand(10);
      if (op < 5 || model.size === 0) {
        // Ids that collide on purpose: multiples of 16 share a home slot in the first tables.
        const id = rand(4) === 0 ? 16 * (nextId++) : nextId++;
        const rec = { id };
        table.set(rec);
        model.set(id, rec);
      } else {
        const keys = [...model.keys()];
        const id = keys[rand(keys.length)]!;
        expect(table.delete(id)).toBe(true);
        model.delete(id);
      }
      if (step % 97 === 0) {
        expect(table.size).toBe(model.size);
        for (const [id, rec] of model) expect(table.get(id)).toBe(rec);
        expect(table.get(nextId + 1_000_000)).toBeUndefined();
      }
    }
    expect(new Set(table.list())).toEqual(new Set(model.values()));
  });

  it('answers a missing or zero id with undefined, and replaces a record under the same id', () => {
    const table = new ContextTable<Rec & { v?: number }>();
    expect(table.get(0)).toBeUndefined();
    expect(table.delete(5)).toBe(false);
    table.set({ id: 5, v: 1 });
    table.set({ id: 5, v: 2 });
    expect(table.size).toBe(1);
    expect(table.get(5)?.v).toBe(2);
    expect(table.has(5)).toBe(true);
    expect(() => table.set({ id: 0 })).toThrow(RangeError);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.has(5)).toBe(false);
  });
});
