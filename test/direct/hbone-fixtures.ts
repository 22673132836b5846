// Shared setup of the HBONE direct tests: one CA, two simulated nodes (A hosts the client, B the servers) on loopback addresses, an echo upstream, and a log collector.
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema, type WeftConfig } from '../../runtime/config/config-schema.js';
import { ProxyState } from '../../runtime/state/proxy-state.js';
import { CertificateAuthority, createBuiltinCaClient } from '../../runtime/identity/certificate-authority.js';
import { CertificateManager } from '../../runtime/identity/certificate-manager.js';
import type { CaClient } from '../../runtime/identity/workload-certificate.js';
import { createHboneServer, type AuthorizeResult, type HboneServer, type HboneServerOptions, type InboundTunnel } from '../../runtime/hbone/hbone-server.js';
import { HboneClient } from '../../runtime/hbone/hbone-client.js';
import { setLogSink } from '../../runtime/log.js';
import { LiveConnections } from '../../runtime/authz/live-connections.js';
import { tunnelAuthorization } from '../../runtime/hbone/hbone-authz.js';

export const IP = { client: '127.0.0.11', client2: '127.0.0.12', server: '127.0.0.21', other: '127.0.0.22', nowhere: '127.0.0.99' } as const;
export const ID = {
  client: 'spiffe://cluster.local/ns/default/sa/sleep',
  client2: 'spiffe://cluster.local/ns/team/sa/curl',
  server: 'spiffe://cluster.local/ns/default/sa/echo',
  other: 'spiffe://cluster.local/ns/default/sa/other',
} as const;

export function meshConfig(node: 'node-a' | 'node-b', extra: Partial<WeftConfig> = {}): WeftConfig {
  return configSchema.parse({
    node,
    workloads: [
      { name: 'sleep', namespace: 'default', serviceAccount: 'sleep', addresses: [IP.client], node: 'node-a', protocol: 'HBONE' },
      { name: 'curl', namespace: 'team', serviceAccount: 'curl', addresses: [IP.client2], node: 'node-a', protocol: 'HBONE' },
      { name: 'echo', namespace: 'default', serviceAccount: 'echo', addresses: [IP.server], node: 'node-b', protocol: 'HBONE', labels: { app: 'echo' } },
      { name: 'other', namespace: 'default', serviceAccount: 'other', addresses: [IP.other], node: 'node-b', protocol: 'HBONE' },
    ],
    ...extra,
  });
}

export function collectLogs(): { lines: Record<string, unknown>[]; restore: () => void } {
  const lines: Record<string, unknown>[] = [];
  const previous = setLogSink((line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  return { lines, restore: () => setLogSink(previous) };
}

/** An upstream app: echoes everything back, or (for bulk tests) counts and discards. */
export async function startEcho(address: string): Promise<{ server: net.Server; port: number; received: () => number }> {
  let received = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d: Buffer) => (received += d.length));
    s.pipe(s);
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  return { server, port: (server.address() as net.AddressInfo).port, received: () => received };
}

export interface Node {
  state: ProxyState;
  live: LiveConnections;
  certs: CertificateManager;
  client: HboneClient;
  server: HboneServer;
}

export interface Mesh {
  ca: CertificateAuthority;
  a: Node;
  b: Node;
  hbonePort: number;
  close: () => Promise<void>;
}

export interface MeshOptions {
  /** Replaces the policy engine (tests that only want to observe tunnels). */
  authorize?: (t: InboundTunnel) => AuthorizeResult;
  ttlSeconds?: number;
  caClient?: (ca: CertificateAuthority) => CaClient;
  /** `node`: Node's TLS and node:http2 carry the tunnels (the fallback path); default: the addon's native path when built. */
  dataPath?: 'auto' | 'node';
  onKeylog?: (line: Buffer) => void;
  /** Also hears every established tunnel with its control (tests that end tunnels as the drain does). */
  onConnection?: HboneServerOptions['onConnection'];
}

function makeNode(config: WeftConfig, caClient: CaClient, ttlSeconds: number, authorize: ((t: InboundTunnel) => AuthorizeResult) | undefined, opts: MeshOptions): Node {
  const state = new ProxyState(config);
  const live = new LiveConnections();
  live.watch(state);
  const authz = tunnelAuthorization(live);
  const certs = new CertificateManager({ caClient, ttlSeconds, isHosted: (id) => state.current.localWorkloads().some((w) => w.identity === id) });
  const paths = { ...(opts.dataPath === undefined ? {} : { dataPath: opts.dataPath }), ...(opts.onKeylog === undefined ? {} : { onKeylog: opts.onKeylog }) };
  const client = new HboneClient({ certificates: certs, ...paths });
  const server = createHboneServer({
    ...paths,
    certificates: certs,
    state,
    authorize: authorize ?? authz.authorize,
    onConnection: (tunnel, control) => {
      authz.onConnection?.(tunnel, control);
      opts.onConnection?.(tunnel, control);
    },
    connectUpstream: (target) =>
      new Promise((resolve, reject) => {
        const s = net.connect({ host: target.address, port: target.port, allowHalfOpen: true });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }),
  });
  return { state, live, certs, client, server };
}

/** Node A (client workloads) and node B (echo, other), both with HBONE servers on their workload IPs at one shared port. */
export async function startMesh(opts: MeshOptions = {}): Promise<Mesh> {
  const ca = CertificateAuthority.load({ trustDomain: 'cluster.local', caDir: join(mkdtempSync(join(tmpdir(), 'weft-hbone-')), 'ca') });
  const caClient = opts.caClient?.(ca) ?? createBuiltinCaClient(ca);
  const a = makeNode(meshConfig('node-a'), caClient, opts.ttlSeconds ?? 3600, opts.authorize, opts);
  const b = makeNode(meshConfig('node-b'), caClient, opts.ttlSeconds ?? 3600, opts.authorize, opts);
  const first = await b.server.listen({ address: IP.server, port: 0 });
  await b.server.listen({ address: IP.other, port: first.port });
  await a.server.listen({ address: IP.client, port: first.port });
  return {
    ca,
    a,
    b,
    hbonePort: first.port,
    close: async () => {
      for (const n of [a, b]) {
        n.client.close();
        await n.server.close();
        n.certs.close();
      }
    },
  };
}

/** Connects, sends `payload` and half-closes, then returns everything the far side answered, or `reset (<code>)` when the connection was reset. */
export async function sendAndCollect(opts: net.NetConnectOpts, payload: string): Promise<string> {
  const s = net.connect({ ...opts, allowHalfOpen: true });
  s.on('error', () => undefined);
  s.end(payload);
  const chunks: Buffer[] = [];
  try {
    for await (const c of s) chunks.push(c as Buffer);
  } catch (err) {
    return `reset (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  return Buffer.concat(chunks).toString();
}
