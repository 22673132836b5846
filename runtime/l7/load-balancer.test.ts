// Unit tests of the endpoint pickers: ring-hash stability, ejection skipping, round-robin order, least-request preference.
import { describe, expect, it } from 'vitest';
import { createLoadBalancer, fnv1a, type Pickable } from './load-balancer.js';

const ep = (key: string): Pickable => ({ key, activeRequests: 0, ejectedUntil: 0 });

describe('load balancers', () => {
  it('ring hash keeps keys on surviving endpoints when one is removed', () => {
    const all = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80'].map(ep);
    const lb = createLoadBalancer<Pickable>({ kind: 'CONSISTENT_HASH', ringSize: 160 });
    const before = new Map<number, string>();
    for (let u = 0; u < 500; u++) before.set(u, lb.pick(all, 0, fnv1a(`user-${u}`))!.key);
    const fewer = all.slice(0, 3);
    let moved = 0;
    for (let u = 0; u < 500; u++) {
      const now = lb.pick(fewer, 0, fnv1a(`user-${u}`))!.key;
      if (before.get(u) === '10.0.0.4:80') moved++;
      else expect(now).toBe(before.get(u));
    }
    expect(moved).toBeGreaterThan(50);
    expect(moved).toBeLessThan(250);
  });

  it('ring hash skips an ejected endpoint and comes back to it after the ejection', () => {
    const all = ['a:1', 'b:1', 'c:1'].map(ep);
    const lb = createLoadBalancer<Pickable>({ kind: 'CONSISTENT_HASH', ringSize: 160 });
    const h = fnv1a('k');
    const owner = lb.pick(all, 0, h)!;
    owner.ejectedUntil = 1000;
    expect(lb.pick(all, 500, h)).not.toBe(owner);
    expect(lb.pick(all, 1000, h)).toBe(owner);
  });

  it('round robin cycles and least request prefers the idle endpoint', () => {
    const all = ['a:1', 'b:1'].map(ep);
    const rr = createLoadBalancer<Pickable>({ kind: 'ROUND_ROBIN', ringSize: 160 });
    expect([rr.pick(all, 0, undefined)!.key, rr.pick(all, 0, undefined)!.key, rr.pick(all, 0, undefined)!.key]).toEqual(['a:1', 'b:1', 'a:1']);
    all[0]!.activeRequests = 10;
    const lr = createLoadBalancer<Pickable>({ kind: 'LEAST_REQUEST', ringSize: 160 });
    let b = 0;
    for (let i = 0; i < 200; i++) if (lr.pick(all, 0, undefined)!.key === 'b:1') b++;
    // P2C picks the busy one only when both draws land on it: about a quarter of the time.
    expect(b).toBeGreaterThan(120);
  });
});
