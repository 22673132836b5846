// Reload under load without a dropped connection, a bad reload leaving the old config serving, graceful drain, inbound delivery.
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { connect, readAll, roundTrip, startTcpServer, type TestServer } from '../helpers/tcp-server.js';
import { TEST_LISTENERS, metricValue, startWeft, testConfig } from '../helpers/weft-harness.js';
import { ConfigWatcher } from '../../runtime/config/config-watcher.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function echoAt(host: string, port = 0): Promise<TestServer> {
  const s = await startTcpServer('echo', host, port);
  cleanups.push(() => s.close());
  return s;
}

function meshConfig(targetPort: number, endpointIps: string[]) {
  return {
    workloads: endpointIps.map((ip, i) => ({ name: `echo-${i}`, addresses: [ip], labels: { app: 'echo' } })),
    services: [{ name: 'echo', addresses: ['10.96.0.20'], ports: [{ port: 7, targetPort }], selector: { app: 'echo' } }],
    localPorts: [{ listen: '127.0.0.1:0', service: 'echo.default', port: 7 }],
  };
}

describe('reload', () => {
  it('swaps endpoints under load without failing a connection', async () => {
    const a = await echoAt('127.0.0.2');
    await echoAt('127.0.0.3', a.port);
    const w = await startWeft(meshConfig(a.port, ['127.0.0.2']));
    cleanups.push(() => w.close());
    const port = Object.values(w.app.ports.localPorts)[0] as number;
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const worker = async (id: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const payload = `w${id}-${i}`;
        try {
          const reply = (await roundTrip(port, payload)).toString();
          if (reply === payload) ok++;
          else failures.push(`${payload} -> ${reply}`);
        } catch (err) {
          failures.push(`${payload}: ${(err as Error).message}`);
        }
      }
    };
    const workers = Array.from({ length: 16 }, (_, i) => worker(i));
    const sets = [['127.0.0.2', '127.0.0.3'], ['127.0.0.3'], ['127.0.0.2'], ['127.0.0.3', '127.0.0.2']];
    for (let r = 0; r < 12; r++) {
      await new Promise((res) => setTimeout(res, 50));
      await w.app.reload(testConfig(meshConfig(a.port, sets[r % sets.length] as string[])));
    }
    stop = true;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(100);
    expect(w.app.state.current.version).toBe(13);
    expect(metricValue(await w.metrics(), 'weft_config_reloads_total', { result: 'applied' })).toBe(12);
  });

  it('rejects an invalid file, keeps serving the old config, then applies a fixed one', async () => {
    const a = await echoAt('127.0.0.2');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-reload-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'weft.yaml');
    const raw = { listeners: TEST_LISTENERS, ...meshConfig(a.port, ['127.0.0.2']) };
    await writeFile(file, stringify(raw));
    const w = await startWeft(raw);
    cleanups.push(() => w.close());
    const watcher = new ConfigWatcher(file, w.app);
    const port = Object.values(w.app.ports.localPorts)[0] as number;

    await writeFile(file, stringify({ ...raw, services: [{ name: 'echo', ports: [{ port: 'seven' }] }] }));
    expect(await watcher.reloadNow('file')).toBe(false);
    expect(w.logs.find((l) => l.msg === 'configuration rejected; the previous configuration keeps serving')).toMatchObject({ problems: [expect.stringMatching(/weft\.yaml:\d+:\d+: services\[0\]\.ports\[0\]\.port/)] });
    expect((await roundTrip(port, 'still old')).toString()).toBe('still old');
    expect(w.app.state.current.version).toBe(1);

    await writeFile(file, stringify({ ...raw, workloads: [{ name: 'echo-renamed', addresses: ['127.0.0.2'], labels: { app: 'echo' } }] }));
    expect(await watcher.reloadNow('sighup')).toBe(true);
    expect((await roundTrip(port, 'new')).toString()).toBe('new');
    expect((await w.waitForLog((e) => e.destination_workload === 'echo-renamed'))['bytes_received']).toBe(3);
    const text = await w.metrics();
    expect(metricValue(text, 'weft_config_reloads_total', { result: 'rejected' })).toBe(1);
    expect(metricValue(text, 'weft_config_reloads_total', { result: 'applied' })).toBe(1);
  });
});

describe('drain', () => {
  it('turns readiness off, stops accepting, lets open connections finish, then forces the rest', async () => {
    const a = await echoAt('127.0.0.2');
    const w = await startWeft(meshConfig(a.port, ['127.0.0.2']));
    const ports = w.app.ports;
    const port = Object.values(ports.localPorts)[0] as number;
    const ready = async (): Promise<number> => (await fetch(`http://127.0.0.1:${ports.readiness}/healthz/ready`)).status;
    expect(await ready()).toBe(200);

    const finishing = await connect(port);
    const lingering = await connect(port);
    finishing.write('a');
    lingering.write('b');
    await new Promise((r) => setTimeout(r, 50));
    const shutdown = w.app.shutdown(400);
    await new Promise((r) => setTimeout(r, 20));
    // Readiness answers 503 while draining (its endpoint closes only at the end of the drain).
    expect(await ready()).toBe(503);
    await expect(connect(port)).rejects.toThrow(/ECONNREFUSED/);
    finishing.end('!');
    expect((await readAll(finishing)).toString()).toBe('a!');
    const { forced } = await shutdown;
    expect(forced).toBe(1);
    // The deadline ends the lingering connection in order: the client sees its echo and then EOF, never a reset.
    expect((await readAll(lingering)).toString()).toBe('b');
    expect(w.accessLog.map((e) => e.close_reason).sort()).toEqual(['complete', 'drained']);
  });
});

describe('inbound', () => {
  it('delivers plaintext inbound connections to local workloads only', async () => {
    const local = await echoAt('127.0.0.2');
    const w = await startWeft({
      node: 'node-a',
      workloads: [
        { name: 'local-app', addresses: ['127.0.0.2'], node: 'node-a' },
        { name: 'remote-app', addresses: ['127.0.0.3'], node: 'node-b' },
      ],
    });
    cleanups.push(() => w.close());
    // Stand in for TPROXY: a plain listener hands each connection to the inbound path with its "original destination".
    const tproxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      const dst = socket.localPort === undefined ? undefined : targets.shift();
      void w.app.handleInbound(socket, dst ?? { address: '0.0.0.0', port: 0 });
    });
    const targets = [{ address: '127.0.0.2', port: local.port }, { address: '127.0.0.3', port: local.port }];
    await new Promise<void>((r) => tproxy.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => tproxy.close(r)));
    const tproxyPort = (tproxy.address() as net.AddressInfo).port;
    expect((await roundTrip(tproxyPort, 'to local')).toString()).toBe('to local');
    await expect(roundTrip(tproxyPort, 'to remote')).rejects.toThrow(/ECONNRESET/);
    expect(await w.waitForLog((e) => e.direction === 'inbound' && e.close_reason === 'complete')).toMatchObject({ destination_workload: 'local-app', listener: 'inbound' });
    expect(await w.waitForLog((e) => e.direction === 'inbound' && e.close_reason === 'failed')).toMatchObject({ error: expect.stringContaining('not a workload on this node') });
    expect(metricValue(await w.metrics(), 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'local-app' })).toBe(1);
  });
});
