// Two whole weft instances in one process: a client on node A reaches a server on node B over HBONE through A's localPorts listener; STRICT at B's inbound path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metricValue, startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { ID, IP, sendAndCollect, startEcho } from './hbone-fixtures.js';
import { freePort } from '../helpers/free-port.js';

let a: WeftUnderTest;
let b: WeftUnderTest;
let echo: Awaited<ReturnType<typeof startEcho>>;
const caDir = join(mkdtempSync(join(tmpdir(), 'weft-two-nodes-')), 'ca');
let hbonePort: number;

function nodeConfig(node: string, hbonePort: number, echoPort: number, extra: Record<string, unknown> = {}) {
  return {
    node,
    identity: { caDir },
    hbone: { port: hbonePort },
    workloads: [
      { name: 'sleep', namespace: 'default', serviceAccount: 'sleep', addresses: [IP.client], node: 'node-a', protocol: 'HBONE' },
      { name: 'echo', namespace: 'default', serviceAccount: 'echo', addresses: [IP.server], node: 'node-b', protocol: 'HBONE', labels: { app: 'echo' } },
    ],
    services: [{ name: 'echo', namespace: 'default', addresses: ['10.96.0.20'], ports: [{ port: 80, targetPort: echoPort }], selector: { app: 'echo' } }],
    localPorts: node === 'node-a' ? [{ listen: '127.0.0.1:0', service: 'echo.default', port: 80 }] : [],
    ...extra,
  };
}

beforeAll(async () => {
  echo = await startEcho(IP.server);
  hbonePort = await freePort(IP.server);
  b = await startWeft(nodeConfig('node-b', hbonePort, echo.port));
  a = await startWeft(nodeConfig('node-a', hbonePort, echo.port));
});

let bStopped = false;

afterAll(async () => {
  await a.close();
  if (!bStopped) await b.close();
  echo.server.close();
});

/** A connection from the sleep pod's address (127.0.0.11) to node A's localPorts listener for echo.default:80. */
function dialFromSleep(): Promise<net.Socket> {
  const port = Object.values(a.app.ports.localPorts)[0] ?? 0;
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: IP.client, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function exchange(total: number): Promise<{ ok: boolean; got: number }> {
  const s = await dialFromSleep();
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let gotBytes = 0;
  const reading = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      got.update(d);
      gotBytes += d.length;
    });
    s.once('end', resolve);
    s.once('error', reject);
  });
  const block = randomBytes(1024 * 1024);
  for (let left = total; left > 0; ) {
    const n = Math.min(left, block.length);
    block[0] = left & 0xff;
    const chunk = n === block.length ? block : block.subarray(0, n);
    sent.update(chunk);
    left -= n;
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  s.end();
  await reading;
  s.destroy();
  return { ok: sent.digest('hex') === got.digest('hex'), got: gotBytes };
}

describe('node A to node B over HBONE (whole runtimes)', () => {
  it('delivers a small exchange exactly; B reports the SPIFFE identity, both report mutual_tls', async () => {
    expect(await exchange(5)).toEqual({ ok: true, got: 5 });
    const line = await b.waitForLog((e) => e.listener === 'hbone' && e.bytes_received === 5);
    expect(line).toMatchObject({ source_principal: ID.client, destination_workload: 'echo', connection_security_policy: 'mutual_tls', bytes_sent: 5 });
    const outbound = await a.waitForLog((e) => e.listener === 'local-port' && e.bytes_sent === 5);
    expect(outbound).toMatchObject({ connection_security_policy: 'mutual_tls', source_principal: ID.client, destination_principal: ID.server });
    const labels = { source_principal: 'cluster.local/ns/default/sa/sleep', destination_principal: 'cluster.local/ns/default/sa/echo', connection_security_policy: 'mutual_tls' };
    expect(metricValue(await b.metrics(), 'istio_tcp_connections_opened_total', { ...labels, reporter: 'destination' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(await a.metrics(), 'istio_tcp_connections_opened_total', { ...labels, reporter: 'source' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(await b.metrics(), 'istio_tcp_received_bytes_total', { ...labels, reporter: 'destination' })).toBeGreaterThanOrEqual(5);
  });

  it('lists the certificates a node holds in /config_dump: only identities it hosts', async () => {
    const dump = (await (await fetch(`http://127.0.0.1:${b.app.ports.admin ?? 0}/config_dump`)).json()) as { certificates: { identity: string; state: string; notAfter: string; pem: string[] }[] };
    expect(dump.certificates.map((c) => c.identity)).toEqual([ID.server]);
    expect(dump.certificates[0]).toMatchObject({ state: 'available' });
    expect(dump.certificates[0]?.pem[0]).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  it('delivers 100 MiB each way exactly', async () => {
    expect(await exchange(100 * 1024 * 1024)).toEqual({ ok: true, got: 100 * 1024 * 1024 });
  }, 120_000);

  it('a DENY at node B surfaces at node A as a DENY-flagged failure (401) with the policy named', async () => {
    const base = b.app.state.current.config;
    await b.app.reload({ ...base, policies: [{ name: 'no-sleep', namespace: 'default', action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }] }] }] });
    try {
      const s = await dialFromSleep();
      s.on('error', () => undefined);
      s.end('x');
      const closed = new Promise((r) => s.once('close', r));
      await closed;
      const line = await a.waitForLog((e) => e.listener === 'local-port' && e.response_flags === 'DENY');
      expect(String(line.error)).toMatch(/answered 401: policy denied: explicitly denied by: default\/no-sleep/);
      expect(metricValue(await a.metrics(), 'istio_tcp_connections_failed_total', { reporter: 'source', response_flags: 'DENY', connection_security_policy: 'mutual_tls' })).toBeGreaterThanOrEqual(1);
    } finally {
      await b.app.reload(base);
    }
    expect(await exchange(4)).toEqual({ ok: true, got: 4 });
  });

  it('STRICT peer authentication at B rejects plaintext delivered to its inbound path; PERMISSIVE lets it through', async () => {
    // What B's 15006 listener does after TPROXY: a plaintext connection for echo's address.
    const inbound = net.createServer({ allowHalfOpen: true }, (s) => void b.app.handleInbound(s, { address: IP.server, port: echo.port }));
    await new Promise<void>((resolve) => inbound.listen(0, '127.0.0.1', resolve));
    const plaintext = (): Promise<string> => sendAndCollect({ host: '127.0.0.1', port: (inbound.address() as net.AddressInfo).port }, 'plain');
    try {
      expect(await plaintext()).toBe('plain');
      // A plaintext connection that is live when STRICT arrives is closed by the policy re-check.
      const live = net.connect({ host: '127.0.0.1', port: (inbound.address() as net.AddressInfo).port });
      live.on('error', () => undefined);
      live.write('hello');
      await new Promise((r) => live.once('data', r));
      const liveClosed = new Promise((r) => live.once('close', r));
      await b.app.reload({ ...b.app.state.current.config, peerAuthentication: [{ mode: 'STRICT' }] });
      await liveClosed;
      expect(await b.waitForLog((e) => e.direction === 'inbound' && e.close_reason === 'policy')).toBeDefined();
      expect(await plaintext()).toBe('reset (ECONNRESET)');
      const denied = await b.waitForLog((e) => e.direction === 'inbound' && e.response_flags === 'DENY');
      expect(String(denied.error)).toMatch(/STRICT mTLS, plaintext connection/);
      // HBONE still works under STRICT.
      expect(await exchange(3)).toEqual({ ok: true, got: 3 });
    } finally {
      inbound.close();
      await b.app.reload({ ...b.app.state.current.config, peerAuthentication: [] });
    }
  });

  it('drains: node B shutting down gives a live inbound tunnel the deadline, then closes it', async () => {
    const s = await dialFromSleep();
    s.on('error', () => undefined);
    s.write('x');
    await new Promise((r) => s.once('data', r));
    // The client socket is half-open capable: the tunnel's end shows as 'end' (or a reset as 'close').
    const closed = new Promise((r) => {
      s.once('end', r);
      s.once('close', r);
    });
    bStopped = true;
    const result = await b.app.shutdown(200);

    expect(result.forced).toBeGreaterThanOrEqual(1);
    await closed;
    // Nothing of B's HBONE side outlives its shutdown: no listener, no TLS connection on its HBONE port.
    const refused = await new Promise<boolean>((resolve) => {
      const probe = net.connect({ host: IP.server, port: hbonePort });
      probe.once('connect', () => {
        probe.destroy();
        resolve(false);
      });
      probe.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
    const onHbonePort = handles.filter((h) => h instanceof net.Socket && h.localAddress === IP.server && h.localPort === hbonePort && !h.destroyed);
    expect(onHbonePort).toEqual([]);
  });
});
