// Outbound L4 through real listeners: service VIP and name resolution, round robin, unhealthy endpoints, retry on refused connect, passthrough.
import { afterEach, describe, expect, it } from 'vitest';
import { readAll, roundTrip, startTcpServer, type TestServer } from '../helpers/tcp-server.js';
import { metricValue, startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { httpConnect } from '../helpers/proxy-clients.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function server(host: string, mode: Parameters<typeof startTcpServer>[0], port = 0): Promise<TestServer> {
  const s = await startTcpServer(mode, host, port);
  cleanups.push(() => s.close());
  return s;
}

async function weft(raw: Record<string, unknown>): Promise<WeftUnderTest> {
  const w = await startWeft(raw);
  cleanups.push(() => w.close());
  return w;
}

function reviews(targetPort: number, extra: Record<string, unknown> = {}) {
  return {
    services: [{ name: 'reviews', namespace: 'default', addresses: ['10.96.0.10'], ports: [{ port: 9080, targetPort }], selector: { app: 'reviews' } }],
    ...extra,
  };
}

describe('outbound service routing', () => {
  it('round robin alternates endpoints that listen on the same target port', async () => {
    const a = await server('127.0.0.2', { reply: 'a' });
    // Pods of one service listen on the same target port, each on its own IP.
    const b = await server('127.0.0.3', { reply: 'b' }, a.port);
    const w = await weft({
      workloads: [
        { name: 'reviews-a', addresses: ['127.0.0.2'], labels: { app: 'reviews' } },
        { name: 'reviews-b', addresses: ['127.0.0.3'], labels: { app: 'reviews' } },
        { name: 'reviews-sick', addresses: ['127.0.0.4'], labels: { app: 'reviews' }, status: 'Unhealthy' },
      ],
      ...reviews(a.port, { localPorts: [{ listen: '127.0.0.1:0', service: 'reviews.default', port: 9080 }] }),
    });
    const port = Object.values(w.app.ports.localPorts)[0] as number;
    const replies: string[] = [];
    for (let i = 0; i < 6; i++) replies.push((await roundTrip(port, 'x')).toString());
    expect(replies).toEqual(['a', 'b', 'a', 'b', 'a', 'b']);
    expect(b.connections).toBe(3);
    const entry = await w.waitForLog((e) => e.destination_workload === 'reviews-b');
    expect(entry).toMatchObject({ kind: 'tcp', direction: 'outbound', listener: 'local-port', destination_service: 'reviews.default.svc.cluster.local', route: 'service', close_reason: 'complete', bytes_sent: 1, bytes_received: 1 });
    const text = await w.metrics();
    expect(metricValue(text, 'istio_tcp_connections_opened_total', { destination_service: 'reviews.default.svc.cluster.local', destination_workload: 'reviews-a', reporter: 'source' })).toBe(3);
    expect(metricValue(text, 'istio_tcp_connections_closed_total', { destination_workload: 'reviews-b' })).toBe(3);
    expect(metricValue(text, 'istio_tcp_sent_bytes_total', { destination_service_name: 'reviews' })).toBe(6);
    expect(metricValue(text, 'istio_tcp_received_bytes_total', { destination_service_name: 'reviews' })).toBe(6);
  });

  it('retries a refused connect on another endpoint and backs the failed one off', async () => {
    const a = await server('127.0.0.2', { reply: 'a' });
    const w = await weft({
      workloads: [
        { name: 'dead', addresses: ['127.0.0.5'], labels: { app: 'reviews' } },
        { name: 'alive', addresses: ['127.0.0.2'], labels: { app: 'reviews' } },
      ],
      ...reviews(a.port, { localPorts: [{ listen: '127.0.0.1:0', service: 'reviews.default', port: 9080 }] }),
    });
    const port = Object.values(w.app.ports.localPorts)[0] as number;
    for (let i = 0; i < 4; i++) expect((await roundTrip(port, 'x')).toString()).toBe('a');
    // One refused attempt on "dead", then it is skipped during its backoff.
    expect(a.connections).toBe(4);
    expect(w.accessLog.every((e) => e.destination_workload === 'alive')).toBe(true);
  });

  it('passes unknown destinations through to the original address', async () => {
    const plain = await server('127.0.0.1', 'echo');
    const w = await weft({});
    const socket = await httpConnect(w.app.ports.explicitProxy as number, `127.0.0.1:${plain.port}`);
    socket.end('ping');
    expect((await readAll(socket)).toString()).toBe('ping');
    const entry = await w.waitForLog((e) => e.route === 'passthrough');
    expect(entry).toMatchObject({ upstream_host: `127.0.0.1:${plain.port}`, listener: 'explicit', bytes_sent: 4, bytes_received: 4 });
  });
});
