// L7's upstream hop stays inside the mesh: a waypoint (node B) reaches an HBONE endpoint on node C over HBONE with the
// waypoint's identity, and L7 done at the source (node A, no waypoint) reaches it with the client pod's identity. Node
// C's destination-side mTLS connection metrics prove each request arrived through an HBONE tunnel, and whose
// certificate opened it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import grpc from '@grpc/grpc-js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metricValue, startWeft, testConfig, type WeftUnderTest } from '../helpers/weft-harness.js';
import { freePort } from '../helpers/free-port.js';
import { IP } from './hbone-fixtures.js';

const WAYPOINT_IP = '127.0.0.23';
const WAYPOINT = 'cluster.local/ns/default/sa/waypoint';
const SLEEP = 'cluster.local/ns/default/sa/sleep';
const WEB_IP = '127.0.0.25';
const H2_IP = '127.0.0.26';
const GRPC_IP = '127.0.0.27';
let a: WeftUnderTest;
let b: WeftUnderTest;
let c: WeftUnderTest;
let echo: http.Server;
let web: http.Server;
let h2: http2.Http2Server;
let grpcServer: grpc.Server;
let raw: (node: string, extra?: Record<string, unknown>) => Record<string, unknown>;
/** Node A's localPorts listener per service: its own loopback address, port chosen at bind (no port race with other test files). */
const LOCAL_ADDRESS: Record<string, string> = { echo: '127.0.20.1', web: '127.0.20.2', h2: '127.0.20.3', grpc: '127.0.20.4' };

function listen(server: net.Server, address: string): Promise<number> {
  return new Promise((resolve) => server.listen(0, address, () => resolve((server.address() as net.AddressInfo).port)));
}

/** An HTTP server that answers with its name, the method and the path. */
function namedServer(name: string): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`${name} ${req.method} ${req.url}`));
  });
}

beforeAll(async () => {
  echo = namedServer('echo');
  web = namedServer('web');
  h2 = http2.createServer((req, res) => res.end(`h2 ${req.url}`));
  const [echoPort, webPort, h2Port] = [await listen(echo, IP.server), await listen(web, WEB_IP), await listen(h2, H2_IP)];
  // A unary method that echoes its bytes and sends a custom trailer next to grpc-status.
  grpcServer = new grpc.Server();
  const asIs = (b: Buffer): Buffer => b;
  grpcServer.addService(
    { Say: { path: '/test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: asIs, requestDeserialize: asIs, responseSerialize: asIs, responseDeserialize: asIs } },
    {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        const trailer = new grpc.Metadata();
        trailer.set('x-echoed-by', 'grpc');
        done(null, call.request, trailer);
      },
    },
  );
  const grpcPort = await new Promise<number>((resolve, reject) => grpcServer.bindAsync(`${GRPC_IP}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const hbonePort = await freePort(WAYPOINT_IP);
  const caDir = join(mkdtempSync(join(tmpdir(), 'weft-l7-hbone-')), 'ca');
  raw = (node, extra = {}) => ({
    node,
    identity: { caDir },
    hbone: { port: hbonePort },
    workloads: [
      { name: 'sleep', namespace: 'default', serviceAccount: 'sleep', addresses: [IP.client], node: 'node-a', protocol: 'HBONE' },
      { name: 'waypoint', namespace: 'default', serviceAccount: 'waypoint', addresses: [WAYPOINT_IP], node: 'node-b', protocol: 'HBONE', labels: { app: 'waypoint' } },
      { name: 'echo', namespace: 'default', serviceAccount: 'echo', addresses: [IP.server], node: 'node-c', protocol: 'HBONE', labels: { app: 'echo' } },
      { name: 'web', namespace: 'default', serviceAccount: 'web', addresses: [WEB_IP], node: 'node-c', protocol: 'HBONE', labels: { app: 'web' } },
      { name: 'h2', namespace: 'default', serviceAccount: 'h2', addresses: [H2_IP], node: 'node-c', protocol: 'HBONE', labels: { app: 'h2' } },
      { name: 'grpc', namespace: 'default', serviceAccount: 'grpc', addresses: [GRPC_IP], node: 'node-c', protocol: 'HBONE', labels: { app: 'grpc' } },
    ],
    services: [
      { name: 'echo', namespace: 'default', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: echoPort, appProtocol: 'http' }], selector: { app: 'echo' }, waypoint: 'waypoint.default' },
      { name: 'h2', namespace: 'default', addresses: ['10.96.0.32'], ports: [{ port: 80, targetPort: h2Port, appProtocol: 'http2' }], selector: { app: 'h2' }, waypoint: 'waypoint.default' },
      { name: 'grpc', namespace: 'default', addresses: ['10.96.0.33'], ports: [{ port: 80, targetPort: grpcPort, appProtocol: 'grpc' }], selector: { app: 'grpc' }, waypoint: 'waypoint.default' },
      { name: 'waypoint', namespace: 'default', addresses: ['10.96.0.31'], ports: [{ port: 15008 }], selector: { app: 'waypoint' } },
      // No waypoint: a route attaches L7 to it, which node A then runs for its client.
      { name: 'web', namespace: 'default', addresses: ['10.96.0.40'], ports: [{ port: 80, targetPort: webPort, appProtocol: 'http' }], selector: { app: 'web' } },
    ],
    routes: [{ host: 'web.default', http: [{ name: 'web-route', backends: [{}] }] }],
    localPorts: node === 'node-a' ? Object.entries(LOCAL_ADDRESS).map(([name, address]) => ({ listen: `${address}:0`, service: `${name}.default`, port: 80 })) : [],
    ...extra,
  });
  c = await startWeft(raw('node-c'));
  b = await startWeft(raw('node-b'));
  a = await startWeft(raw('node-a'));
});

afterAll(async () => {
  await a.close();
  await b.close();
  await c.close();
  for (const s of [echo, web, h2]) s.close();
  grpcServer.forceShutdown();
});

function localPort(service: string): number {
  return a.app.ports.localPorts[`${LOCAL_ADDRESS[service]}:0`] ?? 0;
}

function get(service: string, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: LOCAL_ADDRESS[service], port: localPort(service), path, localAddress: IP.client, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
  });
}

/** HBONE tunnels node C accepted for `workload`, opened with `principal`'s certificate. */
async function tunnelsInto(workload: string, principal: string): Promise<number> {
  const labels = { reporter: 'destination', source_principal: principal, destination_workload: workload, connection_security_policy: 'mutual_tls' };
  return metricValue(await c.metrics(), 'istio_tcp_connections_opened_total', labels);
}

describe('L7 upstream connections to HBONE workloads', () => {
  it('the waypoint reaches the endpoint on another node over HBONE, with its own identity', async () => {
    const r = await get('echo', '/via-waypoint');
    expect(r).toMatchObject({ status: 200, body: 'echo GET /via-waypoint' });
    expect(await tunnelsInto('echo', WAYPOINT)).toBe(1);
    expect(await tunnelsInto('echo', SLEEP)).toBe(0);
    // A second request reuses the waypoint's pooled upstream connection.
    expect(await get('echo', '/again')).toMatchObject({ status: 200, body: 'echo GET /again' });
    expect(await tunnelsInto('echo', WAYPOINT)).toBe(1);
  });

  it('L7 run at the source for a service without a waypoint reaches the endpoint over HBONE with the client pod identity', async () => {
    const r = await get('web', '/at-source');
    expect(r).toMatchObject({ status: 200, body: 'web GET /at-source' });
    expect(await tunnelsInto('web', SLEEP)).toBe(1);
    const line = await a.waitForLog((e) => e.path === '/at-source');
    expect(line).toMatchObject({ route_name: 'web-route', response_code: 200 });
  });
});

describe('HTTP/2 upstreams and refused tunnels', () => {
  it('the waypoint opens its pooled h2c session to an HTTP/2 endpoint through an HBONE tunnel', async () => {
    const session = http2.connect(`http://${LOCAL_ADDRESS.h2}:${localPort('h2')}`, { createConnection: () => net.connect({ host: LOCAL_ADDRESS.h2, port: localPort('h2'), localAddress: IP.client }) });
    const body = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':path': '/h2-through-waypoint', ':authority': 'h2.default' });
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    session.close();
    
    expect(body).toBe('h2 /h2-through-waypoint');
    expect(await tunnelsInto('h2', WAYPOINT)).toBe(1);
  });

  it('a gRPC call through the waypoint keeps its message and trailers end to end over the HBONE hop', async () => {
    const session = http2.connect(`http://${LOCAL_ADDRESS.grpc}:${localPort('grpc')}`, { createConnection: () => net.connect({ host: LOCAL_ADDRESS.grpc, port: localPort('grpc'), localAddress: IP.client }) });
    const message = Buffer.from('ping over hbone');
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    const result = await new Promise<{ body: Buffer; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const s = session.request({ ':method': 'POST', ':path': '/test.Echo/Say', ':authority': 'grpc.default', 'content-type': 'application/grpc', te: 'trailers' });
      const chunks: Buffer[] = [];
      let trailers: http2.IncomingHttpHeaders = {};
      s.on('data', (d: Buffer) => chunks.push(d));
      s.on('trailers', (t: http2.IncomingHttpHeaders) => {
        trailers = t;
      });
      s.on('end', () => resolve({ body: Buffer.concat(chunks), trailers }));
      s.on('error', reject);
      s.end(frame);
    });
    session.close();
    expect(result.body.equals(frame)).toBe(true);
    expect(result.trailers).toMatchObject({ 'grpc-status': '0', 'x-echoed-by': 'grpc' });
    expect(await tunnelsInto('grpc', WAYPOINT)).toBe(1);
  });

  it('a tunnel the destination refuses is an upstream connect failure (503, UF), not a reset', async () => {
    const deny = { policies: [{ name: 'no-waypoint', namespace: 'default', action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/waypoint'] } }] }] }] };
    expect(await c.app.reload(testConfig(raw('node-c', deny)))).toEqual({ ok: true });
    const r = await get('echo', '/denied');
    expect(r.status).toBe(503);
    expect(r.headers['x-weft-error']).toBeDefined();
    const line = await b.waitForLog((e) => e.path === '/denied');
    expect(line.response_flags).toBe('UF');
  });
});
