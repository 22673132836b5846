import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/config-schema.js';
import { StateSnapshot } from '../state/state-snapshot.js';
import { authorize, peerAuthenticationMode } from './authorizer.js';
import type { ConnectionAttributes } from './authz-policy.js';

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';
const CURL = 'spiffe://cluster.local/ns/team/sa/curl';

function snapshot(policies: unknown[] = [], peerAuthentication: unknown[] = []): StateSnapshot {
  return new StateSnapshot(
    configSchema.parse({
      workloads: [
        { name: 'echo', namespace: 'default', serviceAccount: 'echo', addresses: ['10.0.0.2'], labels: { app: 'echo' } },
        { name: 'db', namespace: 'data', serviceAccount: 'db', addresses: ['10.0.0.3'], labels: { app: 'db' } },
      ],
      policies,
      peerAuthentication,
    }),
    1,
  );
}

function conn(snap: StateSnapshot, over: Partial<ConnectionAttributes> = {}): ConnectionAttributes {
  const ip = over.destinationIp ?? '10.0.0.2';
  const destination = snap.workloadByIp(ip);
  if (destination === undefined) throw new Error('no workload');
  return { sourceIdentity: SLEEP, sourceIp: '10.0.1.5', destination, destinationIp: ip, destinationPort: 8080, ...over };
}

const allow = (name: string, rules: unknown[], extra: Record<string, unknown> = {}) => ({ name, namespace: 'default', action: 'ALLOW', rules, ...extra });
const deny = (name: string, rules: unknown[], extra: Record<string, unknown> = {}) => ({ name, namespace: 'default', action: 'DENY', rules, ...extra });

describe('L4 authorization (Istio semantics)', () => {
  it('allows when no policy applies, and ignores other namespaces and targetRef (waypoint) policies', () => {
    const s = snapshot([deny('elsewhere', [{}], { namespace: 'data' }), deny('l7', [{}], { targetRef: { kind: 'Service', name: 'echo' } })]);
    expect(authorize(s, conn(s))).toEqual({ allowed: true });
  });

  it('any matching DENY denies, even when an ALLOW matches too', () => {
    const s = snapshot([allow('all', [{}]), deny('no-sleep', [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }] }])]);
    expect(authorize(s, conn(s))).toEqual({ allowed: false, reason: 'explicitly denied by: default/no-sleep' });
    expect(authorize(s, conn(s, { sourceIdentity: CURL }))).toEqual({ allowed: true });
  });

  it('with ALLOW policies present, one must match', () => {
    const s = snapshot([allow('team-only', [{ from: [{ source: { namespaces: ['team'] } }] }])]);
    expect(authorize(s, conn(s, { sourceIdentity: CURL })).allowed).toBe(true);
    expect(authorize(s, conn(s))).toEqual({ allowed: false, reason: 'allow policies exist, but none allowed' });
    // plaintext has no namespace, so a namespace ALLOW cannot match it
    expect(authorize(s, conn(s, { sourceIdentity: undefined })).allowed).toBe(false);
  });

  it('an ALLOW with no rules allows nothing; a rule that is empty matches everything', () => {
    expect(authorize(snapshot([allow('nothing', [])]), conn(snapshot())).allowed).toBe(false);
    const s = snapshot([allow('nothing', [])]);
    expect(authorize(s, conn(s)).allowed).toBe(false);
    const s2 = snapshot([allow('everything', [{}])]);
    expect(authorize(s2, conn(s2)).allowed).toBe(true);
  });

  it('matches principals with prefix, suffix and presence patterns, and the not-forms', () => {
    const cases: [unknown, string | undefined, boolean][] = [
      [{ principals: ['cluster.local/ns/default/*'] }, SLEEP, true],
      [{ principals: ['*/sa/curl'] }, SLEEP, false],
      [{ principals: ['*'] }, undefined, false],
      [{ notPrincipals: ['*'] }, undefined, true],
      [{ notPrincipals: ['cluster.local/ns/default/sa/sleep'] }, SLEEP, false],
      [{ notPrincipals: ['cluster.local/ns/default/sa/sleep'] }, CURL, true],
      [{ notNamespaces: ['team'] }, CURL, false],
      [{ namespaces: ['team'], notPrincipals: ['*/sa/curl'] }, CURL, false],
    ];
    for (const [source, identity, expected] of cases) {
      const s = snapshot([allow('p', [{ from: [{ source }] }])]);
      expect(authorize(s, conn(s, { sourceIdentity: identity })).allowed, JSON.stringify({ source, identity })).toBe(expected);
    }
  });

  it('matches ipBlocks and notIpBlocks (CIDR and single addresses)', () => {
    const s = snapshot([allow('lan', [{ from: [{ source: { ipBlocks: ['10.0.1.0/24'], notIpBlocks: ['10.0.1.66'] } }] }])]);
    expect(authorize(s, conn(s, { sourceIp: '10.0.1.5' })).allowed).toBe(true);
    expect(authorize(s, conn(s, { sourceIp: '10.0.1.66' })).allowed).toBe(false);
    expect(authorize(s, conn(s, { sourceIp: '10.0.2.5' })).allowed).toBe(false);
  });

  it('matches ports and notPorts; from AND to; rules OR', () => {
    const s = snapshot([
      allow('web', [
        { from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { ports: [8080, '9090'] } }] },
        { to: [{ operation: { notPorts: [8080, 9090, 22] } }] },
      ]),
    ]);
    expect(authorize(s, conn(s, { destinationPort: 9090 })).allowed).toBe(true);
    expect(authorize(s, conn(s, { destinationPort: 9090, sourceIdentity: CURL })).allowed).toBe(false);
    expect(authorize(s, conn(s, { destinationPort: 22 })).allowed).toBe(false);
    expect(authorize(s, conn(s, { destinationPort: 3306, sourceIdentity: CURL })).allowed).toBe(true);
  });

  it('ALLOW rules with L7 fields never match at L4; DENY rules drop the L7 fields', () => {
    const s = snapshot([allow('get-only', [{ to: [{ operation: { methods: ['GET'] } }] }])]);
    expect(authorize(s, conn(s))).toEqual({ allowed: false, reason: 'allow policies exist, but none allowed' });
    const d = snapshot([deny('no-post', [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['POST'] } }] }])]);
    expect(authorize(d, conn(d)).allowed).toBe(false);
    expect(authorize(d, conn(d, { sourceIdentity: CURL })).allowed).toBe(true);
  });

  it('evaluates L4 when-conditions', () => {
    const s = snapshot([deny('block', [{ when: [{ key: 'source.ip', values: ['10.0.1.0/24'] }, { key: 'destination.port', notValues: ['443'] }] }])]);
    expect(authorize(s, conn(s)).allowed).toBe(false);
    expect(authorize(s, conn(s, { destinationPort: 443 })).allowed).toBe(true);
    expect(authorize(s, conn(s, { sourceIp: '192.168.0.1' })).allowed).toBe(true);
  });

  it('selects workloads by labels; root-namespace policies apply mesh-wide', () => {
    const s = snapshot([
      deny('db-only', [{}], { namespace: 'data', selector: { matchLabels: { app: 'db' } } }),
      deny('wrong-namespace', [{}], { selector: { matchLabels: { app: 'db' } } }),
      deny('mesh', [{ from: [{ source: { principals: ['*/sa/evil'] } }] }], { namespace: 'istio-system' }),
    ]);
    expect(authorize(s, conn(s)).allowed).toBe(true);
    expect(authorize(s, conn(s, { destinationIp: '10.0.0.3' }))).toEqual({ allowed: false, reason: 'explicitly denied by: data/db-only' });
    expect(authorize(s, conn(s, { sourceIdentity: 'spiffe://cluster.local/ns/x/sa/evil' }))).toEqual({ allowed: false, reason: 'explicitly denied by: istio-system/mesh' });
  });

  it('STRICT peer authentication denies plaintext; the most specific PeerAuthentication wins', () => {
    const s = snapshot([], [{ mode: 'STRICT' }, { namespace: 'data', mode: 'PERMISSIVE' }, { namespace: 'default', selector: { matchLabels: { app: 'echo' } }, mode: 'PERMISSIVE' }, { namespace: 'default', mode: 'STRICT' }]);
    const echo = s.workloadByIp('10.0.0.2');
    const db = s.workloadByIp('10.0.0.3');
    if (echo === undefined || db === undefined) throw new Error('fixture');
    expect(peerAuthenticationMode(s, echo)).toBe('PERMISSIVE');
    expect(peerAuthenticationMode(s, db)).toBe('PERMISSIVE');
    const strict = snapshot([], [{ mode: 'STRICT' }]);
    expect(authorize(strict, conn(strict, { sourceIdentity: undefined })).allowed).toBe(false);
    expect(authorize(strict, conn(strict)).allowed).toBe(true);
  });

  it('a connection handed to L7 is checked here for STRICT mTLS only: its policies are the L7 filter\'s', () => {
    const s = snapshot([allow('get-only', [{ to: [{ operation: { methods: ['GET'] } }] }]), deny('no-sleep', [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }] }])], [{ name: 'strict', mode: 'STRICT' }]);
    expect(authorize(s, conn(s), { policiesAtL7: true })).toEqual({ allowed: true });
    expect(authorize(s, conn(s, { sourceIdentity: undefined }), { policiesAtL7: true }).allowed).toBe(false);
  });

  it('an ALLOW with L7 fields does not close a live L4 connection (the L7 path enforces it), a DENY still does', () => {
    const l7Allow = allow('get-only', [{ to: [{ operation: { methods: ['GET'] } }] }]);
    const s = snapshot([l7Allow]);
    expect(authorize(s, conn(s)).allowed).toBe(false);
    expect(authorize(s, conn(s), { live: true })).toEqual({ allowed: true });
    const withDeny = snapshot([l7Allow, deny('no-sleep', [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }] }])]);
    expect(authorize(withDeny, conn(withDeny), { live: true })).toEqual({ allowed: false, reason: 'explicitly denied by: default/no-sleep' });
  });
});
