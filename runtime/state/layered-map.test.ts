import { describe, expect, it } from 'vitest';
import { LayeredMap } from './layered-map.js';

describe('LayeredMap', () => {
  it('behaves as a copied Map through random sets and removes, folding its overlay, and never changes an older version', () => {
    let seed = 5;
    const random = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    let layered = new LayeredMap<number, string>(new Map([[1, 'a'], [2, 'b']]));
    let plain = new Map([[1, 'a'], [2, 'b']]);
    const versions: [LayeredMap<number, string>, Map<number, string>][] = [];
    for (let i = 0; i < 400; i++) {
      const set: [number, string][] = Array.from({ length: random(4) }, () => [random(50), `v${i}`]);
      const remove = Array.from({ length: random(4) }, () => random(50));
      layered = layered.with(set, remove, 16);
      plain = new Map(plain);
      for (const [k, v] of set) plain.set(k, v);
      for (const k of remove) plain.delete(k);
      versions.push([layered, plain]);
    }
    for (const [l, p] of versions) {
      expect(l.size).toBe(p.size);
      expect(new Map(l.entries())).toEqual(p);
      const visited: [number, string][] = [];
      l.forEach((v, k) => visited.push([k, v]));
      expect(visited).toEqual([...l.entries()]);
      for (let k = 0; k < 50; k++) expect(l.get(k)).toBe(p.get(k));
    }
  });

  it('keeps a changed key in its place', () => {
    const m = new LayeredMap(new Map([['x', 1], ['y', 2], ['z', 3]])).with([['y', 20], ['w', 4]], ['x']);
    expect([...m.entries()]).toEqual([['y', 20], ['z', 3], ['w', 4]]);
  });
});
