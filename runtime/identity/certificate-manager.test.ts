import { afterEach, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority, createBuiltinCaClient } from './certificate-authority.js';
import { CertificateManager } from './certificate-manager.js';
import type { CaClient } from './workload-certificate.js';

const A = 'spiffe://cluster.local/ns/default/sa/a';
const B = 'spiffe://cluster.local/ns/default/sa/b';

function countingClient(ca: CertificateAuthority): CaClient & { calls: string[]; failNext: number } {
  const inner = createBuiltinCaClient(ca);
  const client = {
    calls: [] as string[],
    failNext: 0,
    async fetchCertificate(identity: string, ttl: number) {
      client.calls.push(identity);
      if (client.failNext > 0) {
        client.failNext--;
        throw new Error('CA unavailable');
      }
      return inner.fetchCertificate(identity, ttl);
    },
  };
  return client;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('CertificateManager', () => {
  it('refuses identities not hosted on this node without calling the CA', async () => {
    const client = countingClient(CertificateAuthority.generate('cluster.local'));
    const mgr = new CertificateManager({ caClient: client, ttlSeconds: 3600, isHosted: (id) => id === A });
    await expect(mgr.fetch(B)).rejects.toThrow(/no workload on this node/);
    expect(client.calls).toEqual([]);
    const cert = await mgr.fetch(A);
    expect(cert.identity).toBe(A);
    // concurrent callers share one fetch, later callers get the cached certificate
    await Promise.all([mgr.fetch(A), mgr.fetch(A)]);
    expect(client.calls).toEqual([A]);
    mgr.close();
  });

  it('refreshes at half-life with jitter and tells listeners; forgets untracked identities', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const client = countingClient(CertificateAuthority.generate('cluster.local'));
    const mgr = new CertificateManager({ caClient: client, ttlSeconds: 24 * 3600, isHosted: () => true, random: () => 0.5 });
    const rotations: string[] = [];
    mgr.onRotate((next, prev) => rotations.push(`${next.identity}:${prev === undefined ? 'new' : 'rotated'}`));
    mgr.track([A, B]);
    await vi.advanceTimersByTimeAsync(0);
    expect(rotations.sort()).toEqual([`${A}:new`, `${B}:new`]);
    const first = mgr.current(A);
    // half-life of 24 h (plus the 2 min backdate) minus 5% jitter: about 10 h 49 min after issue
    await vi.advanceTimersByTimeAsync(10 * 3600_000);
    expect(client.calls.filter((c) => c === A)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(client.calls.filter((c) => c === A)).toHaveLength(2);
    expect(mgr.current(A)).not.toBe(first);
    expect(rotations).toContain(`${A}:rotated`);
    mgr.track([A]);
    expect(mgr.identities()).toEqual([A]);
    mgr.close();
  });

  it('retries with exponential backoff after CA failures and keeps serving the previous certificate', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const client = countingClient(CertificateAuthority.generate('cluster.local'));
    const mgr = new CertificateManager({ caClient: client, ttlSeconds: 3600, isHosted: () => true, random: () => 0 });
    client.failNext = 3;
    await expect(mgr.fetch(A)).rejects.toThrow(/cannot obtain a certificate/);
    await vi.advanceTimersByTimeAsync(500); // retry 1 (fails)
    await vi.advanceTimersByTimeAsync(1000); // retry 2 (fails)
    expect(client.calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1999);
    expect(client.calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(client.calls).toHaveLength(4);
    const cert = mgr.current(A);
    expect(cert?.identity).toBe(A);
    client.failNext = 1;
    // half-life of 3600 s plus the 120 s backdate: the refresh at ~1740 s after issue fails
    // (X.509 times have whole seconds, so the exact instant moves by up to a second)
    await vi.advanceTimersByTimeAsync(1_738_000);
    expect(client.calls).toHaveLength(4);
    for (let i = 0; i < 40 && client.calls.length === 4; i++) await vi.advanceTimersByTimeAsync(100);
    expect(client.calls).toHaveLength(5);
    expect(mgr.current(A)).toBe(cert);
    expect(await mgr.fetch(A)).toBe(cert);
    await vi.advanceTimersByTimeAsync(500);
    expect(client.calls).toHaveLength(6);
    expect(mgr.current(A)).not.toBe(cert);
    mgr.close();
  });
});
