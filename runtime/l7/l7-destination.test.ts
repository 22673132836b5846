// Unit tests of isL7Destination: plugins, routes, traffic policies and L7 authorization make a destination L7; nothing else does.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/config-schema.js';
import { StateSnapshot } from '../state/state-snapshot.js';
import { isL7Destination } from './l7-destination.js';

function snapshot(extra: Record<string, unknown>): StateSnapshot {
  return new StateSnapshot(
    configSchema.parse({
      plugins: [{ name: 'p', url: 'file:///p.wasm' }],
      workloads: [{ name: 'w', addresses: ['10.0.0.5'], labels: { app: 'a' } }],
      services: [
        { name: 'a', addresses: ['10.96.0.1'], ports: [{ port: 80 }, { port: 81 }], selector: { app: 'a' }, annotations: {} },
        { name: 'b', addresses: ['10.96.0.2'], ports: [{ port: 80 }], selector: { app: 'b' } },
      ],
      ...extra,
    }),
    1,
  );
}

describe('isL7Destination', () => {
  it('is false for a plain service and true once a route or traffic policy names it (per port)', () => {
    const plain = snapshot({});
    const a = plain.serviceByName('a.default')!;
    expect(isL7Destination(plain, { service: a, port: 80 })).toBe(false);
    const routed = snapshot({ routes: [{ host: 'a.default', port: 81, http: [{ timeoutMs: 100 }] }] });
    const ra = routed.serviceByName('a.default')!;
    expect(isL7Destination(routed, { service: ra, port: 81 })).toBe(true);
    expect(isL7Destination(routed, { service: ra, port: 80 })).toBe(false);
    expect(isL7Destination(routed, { service: routed.serviceByName('b.default')!, port: 80 })).toBe(false);
    const policed = snapshot({ trafficPolicies: [{ host: 'a.default', outlierDetection: {} }] });
    expect(isL7Destination(policed, { service: policed.serviceByName('a.default')!, port: 80 })).toBe(true);
  });

  it('is true with a plugin annotation or an L7 authorization rule, not with an L4-only rule', () => {
    const plugged = snapshot({ services: [{ name: 'a', addresses: ['10.96.0.1'], ports: [{ port: 80 }], selector: { app: 'a' }, annotations: { 'weft.dev/plugins': 'p' } }] });
    expect(isL7Destination(plugged, { service: plugged.serviceByName('a.default')!, port: 80 })).toBe(true);
    const l4 = snapshot({ policies: [{ name: 'x', targetRef: { kind: 'Service', name: 'a' }, rules: [{ to: [{ operation: { ports: [80] } }] }] }] });
    expect(isL7Destination(l4, { service: l4.serviceByName('a.default')!, port: 80 })).toBe(false);
    const l7 = snapshot({ policies: [{ name: 'x', selector: { matchLabels: { app: 'a' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }] });
    expect(isL7Destination(l7, { workload: l7.workloadByIp('10.0.0.5'), port: 80 })).toBe(true);
  });
});
