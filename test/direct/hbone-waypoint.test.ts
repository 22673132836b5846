// A service with a waypoint: node A sends the connection over HBONE to the waypoint workload on node B, whose L7 proxy receives the stream with the client's identity.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { L7Target } from '../../runtime/l4/connection-proxy.js';
import { startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { ID, IP, sendAndCollect, startEcho } from './hbone-fixtures.js';
import { freePort } from '../helpers/free-port.js';

const WAYPOINT_IP = '127.0.0.23';
const DB_IP = '127.0.0.24';
let a: WeftUnderTest;
let b: WeftUnderTest;
let echo: Awaited<ReturnType<typeof startEcho>>;
const targets: L7Target[] = [];

beforeAll(async () => {
  echo = await startEcho(IP.server);
  const hbonePort = await freePort(WAYPOINT_IP);
  const caDir = join(mkdtempSync(join(tmpdir(), 'weft-waypoint-')), 'ca');
  const raw = (node: string) => ({
    node,
    identity: { caDir },
    hbone: { port: hbonePort },
    workloads: [
      { name: 'sleep', namespace: 'default', serviceAccount: 'sleep', addresses: [IP.client], node: 'node-a', protocol: 'HBONE' },
      { name: 'echo', namespace: 'default', serviceAccount: 'echo', addresses: [IP.server], node: 'node-b', protocol: 'HBONE', labels: { app: 'echo' } },
      { name: 'waypoint', namespace: 'default', serviceAccount: 'waypoint', addresses: [WAYPOINT_IP], node: 'node-b', protocol: 'HBONE', labels: { app: 'waypoint' } },
      { name: 'db', namespace: 'default', serviceAccount: 'db', addresses: [DB_IP], node: 'node-b', protocol: 'HBONE', waypoint: 'waypoint.default' },
    ],
    services: [
      { name: 'echo', namespace: 'default', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: echo.port }], selector: { app: 'echo' }, waypoint: 'waypoint.default' },
      { name: 'waypoint', namespace: 'default', addresses: ['10.96.0.31'], ports: [{ port: 15008 }], selector: { app: 'waypoint' } },
    ],
    localPorts: node === 'node-a' ? [{ listen: '127.0.0.1:0', service: 'echo.default', port: 80 }] : [],
  });
  b = await startWeft(raw('node-b'));
  a = await startWeft(raw('node-a'));
});

afterAll(async () => {
  await a.close();
  await b.close();
  echo.server.close();
});

function call(): Promise<string> {
  const port = Object.values(a.app.ports.localPorts)[0] ?? 0;
  return sendAndCollect({ host: '127.0.0.1', port, localAddress: IP.client }, 'GET / HTTP/1.1\r\n\r\n');
}

describe('service waypoint over HBONE', () => {
  it('reaches the waypoint on node B instead of the endpoint; the L7 proxy sees the client identity and the service', async () => {
    b.app.setL7Handoff({
      handleConnection(socket, target) {
        targets.push(target);
        socket.end('waypoint\n');
      },
    });
    expect(await call()).toBe('waypoint\n');
    expect(targets[0]).toMatchObject({ sourceIdentity: ID.client, originalDst: { address: '10.96.0.30', port: 80 }, source: { address: IP.client } });
    expect(targets[0]?.service?.name).toBe('echo');
    const line = await a.waitForLog((e) => e.listener === 'local-port' && e.connection_security_policy === 'mutual_tls');
    expect(line.destination_principal).toBe('spiffe://cluster.local/ns/default/sa/waypoint');
  });

  it('sends workload-addressed traffic for a workload with a waypoint to that waypoint (explicit CONNECT from the pod)', async () => {
    const s = net.connect({ host: '127.0.0.1', port: a.app.ports.explicitProxy ?? 0, localAddress: IP.client });
    s.on('error', () => undefined);
    s.write(`CONNECT ${DB_IP}:5432 HTTP/1.1\r\nHost: ${DB_IP}:5432\r\n\r\n`);
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(text.endsWith('waypoint\n')).toBe(true);
    expect(targets.at(-1)).toMatchObject({ sourceIdentity: ID.client, originalDst: { address: DB_IP, port: 5432 } });
    expect(targets.at(-1)?.workload?.name).toBe('db');
  });

  it('answers 503 (the client sees a reset) when node B has no L7 proxy to act as waypoint', async () => {
    b.app.setL7Handoff(undefined);
    expect(await call()).toMatch(/^reset|^$/);
    // Both runtimes share this process's log sink, which the later-started node A installed.
    expect([...a.logs, ...b.logs].some((l) => l.status === 503 && /runs no L7 proxy/.test(String(l.reason)))).toBe(true);
  });
});
