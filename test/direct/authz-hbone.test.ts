import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolicyConfig } from '../../runtime/config/config-schema.js';
import { HboneError } from '../../runtime/hbone/hbone-client.js';
import { collectLogs, ID, IP, meshConfig, startEcho, startMesh, type Mesh } from './hbone-fixtures.js';

let mesh: Mesh;
let echo: Awaited<ReturnType<typeof startEcho>>;
const logs = collectLogs();

beforeAll(async () => {
  mesh = await startMesh();
  echo = await startEcho(IP.server);
});

afterAll(async () => {
  await mesh.close();
  echo.server.close();
  logs.restore();
});

function setPolicies(policies: unknown[]): void {
  mesh.b.state.update(meshConfig('node-b', { policies: policies as PolicyConfig[] }));
}

function open(from: 'sleep' | 'curl') {
  return mesh.a.client.connect({
    sourceIdentity: from === 'sleep' ? ID.client : ID.client2,
    sourceAddress: from === 'sleep' ? IP.client : IP.client2,
    destination: { address: IP.server, port: echo.port },
    destinationIdentities: [ID.server],
    via: { address: IP.server, port: mesh.hbonePort },
    timeoutMs: 3000,
  });
}

/** 200 and an echoed byte, or the HTTP status of the rejection. */
async function outcome(from: 'sleep' | 'curl'): Promise<number> {
  try {
    const s = await open(from);
    s.end('x');
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('x');
    return 200;
  } catch (err) {
    if (err instanceof HboneError && err.status !== undefined) return err.status;
    throw err;
  }
}

const sleepPrincipal = 'cluster.local/ns/default/sa/sleep';

describe('L4 authorization over HBONE at node B', () => {
  it('ALLOW/DENY combinations decide per source identity, with 401 and a log line on deny', async () => {
    const table: { policies: unknown[]; sleep: number; curl: number }[] = [
      { policies: [], sleep: 200, curl: 200 },
      { policies: [{ name: 'allow-sleep', action: 'ALLOW', rules: [{ from: [{ source: { principals: [sleepPrincipal] } }] }] }], sleep: 200, curl: 401 },
      { policies: [{ name: 'deny-team', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['team'] } }] }] }], sleep: 200, curl: 401 },
      {
        policies: [
          { name: 'allow-all', action: 'ALLOW', rules: [{}] },
          { name: 'deny-sleep', action: 'DENY', rules: [{ from: [{ source: { principals: [sleepPrincipal] } }] }] },
        ],
        sleep: 401,
        curl: 200,
      },
      { policies: [{ name: 'allow-not-team', action: 'ALLOW', rules: [{ from: [{ source: { notNamespaces: ['team'] } }] }] }], sleep: 200, curl: 401 },
      { policies: [{ name: 'deny-other-ports', action: 'DENY', rules: [{ to: [{ operation: { notPorts: [echo.port] } }] }] }], sleep: 200, curl: 200 },
      { policies: [{ name: 'allow-other-port', action: 'ALLOW', rules: [{ to: [{ operation: { ports: [1] } }] }] }], sleep: 401, curl: 401 },
      { policies: [{ name: 'deny-not-lan', action: 'DENY', rules: [{ from: [{ source: { notIpBlocks: ['127.0.0.11/32'] } }] }] }], sleep: 200, curl: 401 },
    ];
    for (const row of table) {
      setPolicies(row.policies);
      expect({ policies: row.policies, sleep: await outcome('sleep'), curl: await outcome('curl') }).toEqual(row);
    }
    expect(logs.lines.some((l) => l.status === 401 && /policy denied: explicitly denied by: default\/deny-sleep/.test(String(l.reason)))).toBe(true);
    expect(logs.lines.some((l) => l.status === 401 && /policy denied: allow policies exist, but none allowed/.test(String(l.reason)))).toBe(true);
    setPolicies([]);
  });

  it('closes a live tunnel when a DENY policy is added, and leaves other tunnels alone', async () => {
    setPolicies([]);
    const denied = await open('curl');
    const kept = await open('sleep');
    denied.write('a');
    kept.write('b');
    await new Promise((r) => denied.once('data', r));
    await new Promise((r) => kept.once('data', r));
    expect(mesh.b.live.size).toBe(2);
    const closed = new Promise<void>((resolve) => denied.once('close', () => resolve()));
    denied.on('error', () => undefined);
    setPolicies([{ name: 'deny-team', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['team'] } }] }] }]);
    await closed;
    expect(logs.lines.some((l) => l.msg === 'closing connection after policy change' && /explicitly denied by: default\/deny-team/.test(String(l.reason)))).toBe(true);
    // The allowed tunnel still carries data both ways.
    kept.write('still here');
    const echoed = await new Promise<string>((r) => kept.once('data', (d: Buffer) => r(d.toString())));
    expect(echoed).toBe('still here');
    expect(mesh.b.live.size).toBe(1);
    kept.end();
    setPolicies([]);
  });
});
