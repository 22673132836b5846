// A destination's policy holds on every path that reaches it on this node: same-node capture (plaintext and HBONE), inbound, the explicit proxy (CONNECT and absolute-form) and localPorts; L4 DENY, L7 DENY and an ALLOW by principal, where the source identity is what the path knows.
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { freePort } from '../helpers/free-port.js';
import type { SocketAddr } from '../../runtime/l4/original-destination.js';

const IP = { productpage: '127.0.0.31', ratings: '127.0.0.32', reviews: '127.0.0.33' } as const;
const VIP = { ratings: '10.96.0.32', reviews: '10.96.0.33' } as const;
const PRODUCTPAGE = 'cluster.local/ns/default/sa/productpage';

let w: WeftUnderTest;
const servers: http.Server[] = [];
const seen: string[] = [];
let ratingsPort = 0;
let reviewsPort = 0;
/** Stand-ins for the capture listeners (15001, 15006): each accepted connection is handed to the app with its original destination. */
let outboundCapture: net.Server;
let inboundCapture: net.Server;
let captureDst: SocketAddr = { address: VIP.ratings, port: 9080 };
let baseConfig: Record<string, unknown>;

async function startApp(name: string, address: string): Promise<number> {
  const server = http.createServer((req, res) => {
    seen.push(`${name} ${req.url ?? ''}`);
    res.end(`${name} ok`);
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  servers.push(server);
  return (server.address() as net.AddressInfo).port;
}

async function listenCapture(handle: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

beforeAll(async () => {
  ratingsPort = await startApp('ratings', IP.ratings);
  reviewsPort = await startApp('reviews', IP.reviews);
  const hbonePort = await freePort(IP.reviews);
  baseConfig = {
    node: 'node-a',
    identity: { caDir: join(mkdtempSync(join(tmpdir(), 'weft-authz-paths-')), 'ca') },
    hbone: { port: hbonePort },
    workloads: [
      { name: 'productpage', namespace: 'default', serviceAccount: 'productpage', addresses: [IP.productpage], node: 'node-a', protocol: 'HBONE', labels: { app: 'productpage' } },
      { name: 'ratings', namespace: 'default', serviceAccount: 'ratings', addresses: [IP.ratings], node: 'node-a', protocol: 'TCP', labels: { app: 'ratings' } },
      { name: 'reviews', namespace: 'default', serviceAccount: 'reviews', addresses: [IP.reviews], node: 'node-a', protocol: 'HBONE', labels: { app: 'reviews' } },
    ],
    services: [
      { name: 'ratings', namespace: 'default', addresses: [VIP.ratings], ports: [{ port: 9080, targetPort: ratingsPort, appProtocol: 'http' }], selector: { app: 'ratings' } },
      { name: 'reviews', namespace: 'default', addresses: [VIP.reviews], ports: [{ port: 9080, targetPort: reviewsPort, appProtocol: 'http' }], selector: { app: 'reviews' } },
    ],
    localPorts: [{ listen: '127.0.0.1:0', service: 'ratings.default', port: 9080 }],
  };
  w = await startWeft(baseConfig);
  outboundCapture = await listenCapture((s) => void w.app.handleOutbound(s, captureDst));
  inboundCapture = await listenCapture((s) => void w.app.handleInbound(s, { address: IP.ratings, port: ratingsPort }));
});

afterAll(async () => {
  outboundCapture.close();
  inboundCapture.close();
  await w.close();
  for (const s of servers) s.close();
});

async function setPolicies(policies: unknown[]): Promise<void> {
  const { testConfig } = await import('../helpers/weft-harness.js');
  const result = await w.app.reload(testConfig({ ...baseConfig, policies }));
  expect(result).toEqual({ ok: true });
}

beforeEach(() => {
  seen.length = 0;
});

/** Writes `bytes` from `localAddress` and reads until the close: the answer's status line, or `reset`/`closed` when none came. */
async function exchange(port: number, bytes: string, localAddress = '127.0.0.1'): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const outcome = await new Promise<string>((resolve) => {
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' ? 'reset' : String(err.code)));
    socket.once('close', () => resolve('closed'));
    socket.write(bytes);
  });
  socket.destroy();
  const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
  return status ?? outcome;
}

const get = (path: string, host = 'ratings.default:9080'): string => `GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`;

const paths: { name: string; run: (path: string) => Promise<string>; target: 'ratings' | 'reviews' }[] = [
  {
    name: 'same-node capture of a pod (plaintext destination)',
    target: 'ratings',
    run: (path) => {
      captureDst = { address: VIP.ratings, port: 9080 };
      return exchange((outboundCapture.address() as net.AddressInfo).port, get(path), IP.productpage);
    },
  },
  {
    name: 'same-node capture of a pod to an HBONE destination (this node’s HBONE server)',
    target: 'reviews',
    run: (path) => {
      captureDst = { address: VIP.reviews, port: 9080 };
      return exchange((outboundCapture.address() as net.AddressInfo).port, get(path, 'reviews.default:9080'), IP.productpage);
    },
  },
  { name: 'inbound (15006)', target: 'ratings', run: (path) => exchange((inboundCapture.address() as net.AddressInfo).port, get(path)) },
  { name: 'explicit proxy, absolute-form', target: 'ratings', run: (path) => exchange(w.app.ports.explicitProxy!, `GET http://ratings.default:9080${path} HTTP/1.1\r\nhost: ratings.default:9080\r\n\r\n`) },
  {
    name: 'explicit proxy, CONNECT',
    target: 'ratings',
    run: async (path) => {
      const text = await exchangeRaw(w.app.ports.explicitProxy!, `CONNECT ratings.default:9080 HTTP/1.1\r\nhost: ratings.default:9080\r\n\r\n${get(path)}`);
      // The tunnel's own 200, then the service's answer inside it.
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      return statuses.at(-1) ?? 'closed';
    },
  },
  { name: 'localPorts', target: 'ratings', run: (path) => exchange(Object.values(w.app.ports.localPorts)[0]!, get(path)) },
];

async function exchangeRaw(port: number, bytes: string): Promise<string> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  await new Promise<void>((resolve) => {
    socket.once('error', () => resolve());
    socket.once('close', () => resolve());
    socket.write(bytes);
  });
  socket.destroy();
  return text;
}

const denyAll = (app: string) => ({ name: `deny-${app}`, namespace: 'default', action: 'DENY', selector: { matchLabels: { app } }, rules: [{}] });

describe('a DENY policy on a workload of this node holds on every path', () => {
  for (const p of paths) {
    it(`${p.name}: served without the policy, refused with it, and nothing reaches the workload`, async () => {
      await setPolicies([]);
      expect(await p.run('/open')).toBe('200');
      expect(seen).toContain(`${p.target} /open`);
      await setPolicies([denyAll(p.target)]);
      seen.length = 0;
      const denied = await p.run('/denied');
      expect(denied).not.toBe('200');
      expect(seen).toEqual([]);
      await setPolicies([]);
    });
  }

  it('logs the same-node denial with flag DENY and the policy that matched', async () => {
    await setPolicies([denyAll('ratings')]);
    captureDst = { address: VIP.ratings, port: 9080 };
    await exchange((outboundCapture.address() as net.AddressInfo).port, get('/logged'), IP.productpage);
    const line = await w.waitForLog((e) => e.listener === 'outbound' && e.response_flags === 'DENY');
    expect(String(line.error)).toMatch(/explicitly denied by: default\/deny-ratings/);
    await setPolicies([]);
  });

  it('closes a live same-node connection when a DENY arrives', async () => {
    await setPolicies([]);
    captureDst = { address: VIP.ratings, port: 9080 };
    const socket = net.connect({ host: '127.0.0.1', port: (outboundCapture.address() as net.AddressInfo).port, localAddress: IP.productpage });
    socket.on('error', () => undefined);
    socket.write(`GET /live HTTP/1.1\r\nhost: ratings\r\n\r\n`);
    await new Promise((r) => socket.once('data', r));
    const closed = new Promise((r) => socket.once('close', r));
    await setPolicies([denyAll('ratings')]);
    await closed;
    expect(await w.waitForLog((e) => e.listener === 'outbound' && e.close_reason === 'policy')).toBeDefined();
    await setPolicies([]);
  });
});

describe('an L7 policy on a service of this node holds on every path', () => {
  const l7Deny = { name: 'deny-admin', namespace: 'default', action: 'DENY', targetRef: { kind: 'Service', name: 'ratings' }, rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] };
  for (const p of paths.filter((q) => q.target === 'ratings' && !q.name.startsWith('inbound'))) {
    it(`${p.name}: /admin is 403, other paths are served`, async () => {
      await setPolicies([l7Deny]);
      expect(await p.run('/admin/panel')).toBe('403');
      expect(await p.run('/public')).toBe('200');
      expect(seen).toEqual(['ratings /public']);
      await setPolicies([]);
    });
  }
});

describe('the source identity is what the path knows', () => {
  it('an ALLOW for productpage admits the captured pod and refuses local clients that carry no identity', async () => {
    await setPolicies([{ name: 'allow-productpage', namespace: 'default', action: 'ALLOW', selector: { matchLabels: { app: 'ratings' } }, rules: [{ from: [{ source: { principals: [PRODUCTPAGE] } }] }] }]);
    expect(await paths[0]!.run('/from-pod')).toBe('200');
    expect(await paths.find((p) => p.name === 'localPorts')!.run('/from-local')).not.toBe('200');
    expect(await paths.find((p) => p.name === 'explicit proxy, absolute-form')!.run('/from-explicit')).not.toBe('200');
    expect(seen).toEqual(['ratings /from-pod']);
    await setPolicies([]);
  });

  it('an L7 ALLOW by principal sees the captured pod’s identity', async () => {
    await setPolicies([{ name: 'allow-pp-l7', namespace: 'default', action: 'ALLOW', targetRef: { kind: 'Service', name: 'ratings' }, rules: [{ from: [{ source: { principals: [PRODUCTPAGE] } }], to: [{ operation: { methods: ['GET'] } }] }] }]);
    expect(await paths[0]!.run('/l7-from-pod')).toBe('200');
    expect(await paths.find((p) => p.name === 'localPorts')!.run('/l7-from-local')).toBe('403');
    expect(seen).toEqual(['ratings /l7-from-pod']);
    await setPolicies([]);
  });
});
