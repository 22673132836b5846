// h2c and gRPC streams get what HTTP/1 has: retries with budget (status, gRPC status in headers or trailers, connect
// failure, reset, refused stream, per-try timeout), mirroring, and Wasm body and trailers callbacks with buffering
// limits, header edits made in body callbacks, and the connection's properties.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { WeftConfig } from '../../runtime/config/config-schema.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { ensurePluginBuilt } from '../../sdk/testing/ensure-plugin-built.js';
import { pluginConfig } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, startProxy, type ProxyHarness } from './l7-harness.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let parityUrl = '';
beforeAll(async () => {
  parityUrl = pathToFileURL(await ensurePluginBuilt(fileURLToPath(new URL('../fixtures/h2-parity-plugin/', import.meta.url)))).href;
}, 60_000);

/** An h2c upstream on `address` (port 0 for any), closed after the test. */
async function h2Upstream(handler: (req: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, n: number) => void, address = '127.0.0.1', port = 0): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    handler(stream, headers, ++hits);
  });
  server.listen(port, address);
  await once(server, 'listening');
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s: http2.ServerHttp2Session) => sessions.add(s));
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as net.AddressInfo).port, hits: () => hits };
}

/** Reads a request body (and trailers) the way an upstream handler sees it. */
function readBody(stream: http2.ServerHttp2Stream): Promise<{ body: string; trailers: http2.IncomingHttpHeaders | undefined }> {
  return new Promise((resolve) => {
    let body = '';
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on('data', (c: Buffer) => (body += c.toString()));
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
    stream.on('end', () => resolve({ body, trailers }));
  });
}

function serviceConfig(port: number, appProtocol: string, extra: Record<string, unknown> = {}): WeftConfig {
  const { workloads = [], services = [], ...rest } = extra as { workloads?: unknown[]; services?: unknown[] };
  return makeConfig({
    workloads: [{ name: 'svc-1', addresses: ['127.0.0.1'], labels: { app: 'svc' } }, ...workloads],
    services: [{ name: 'svc', addresses: ['10.96.0.80'], ports: [{ port: 80, targetPort: port, appProtocol }], selector: { app: 'svc' } }, ...services],
    ...rest,
  });
}

const route = (http: Record<string, unknown>): Record<string, unknown> => ({ routes: [{ host: 'svc.default', http: [http] }] });

async function proxy(config: WeftConfig, extra: Parameters<typeof startProxy>[3] = {}): Promise<ProxyHarness> {
  const h = await startProxy(config, 'svc.default', 80, extra);
  cleanups.push(() => h.close());
  return h;
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  trailers: http2.IncomingHttpHeaders | undefined;
  local: { port: number };
}

/** One h2c request on a fresh client session. */
async function h2call(port: number, path: string, opts: { method?: string; body?: string | Buffer; headers?: Record<string, string>; trailers?: Record<string, string> } = {}): Promise<H2Answer> {
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => undefined);
  cleanups.push(() => Promise.resolve(void client.close()));
  await once(client, 'connect');
  const local = { port: client.socket.localPort ?? 0 };
  const hasBody = opts.body !== undefined || opts.trailers !== undefined;
  const req = client.request({ ':path': path, ':method': opts.method ?? (hasBody ? 'POST' : 'GET'), ...opts.headers }, { endStream: !hasBody, waitForTrailers: opts.trailers !== undefined });
  req.on('error', () => undefined);
  if (opts.trailers !== undefined) req.on('wantTrailers', () => req.sendTrailers(opts.trailers!));
  if (hasBody) req.end(opts.body ?? '');
  const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
  let body = '';
  let trailers: http2.IncomingHttpHeaders | undefined;
  req.on('data', (c: Buffer) => (body += c.toString()));
  req.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
  await new Promise((r) => req.on('close', r));
  return { status: Number(headers[':status']), headers, body, trailers, local };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString()) as unknown,
};
const echoService: grpc.ServiceDefinition = {
  Say: { path: '/test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
};
type EchoClient = grpc.Client & { Say: (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, v: { text: string }) => void) => grpc.ClientUnaryCall };

async function grpcServer(say: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>, n: number) => void, address = '127.0.0.1'): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = new grpc.Server();
  server.addService(echoService, { Say: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => say(call, cb, ++hits) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${address}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  cleanups.push(() => new Promise((r) => server.tryShutdown(() => r())));
  return { port, hits: () => hits };
}

function grpcClient(port: number): EchoClient {
  const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
  cleanups.push(() => Promise.resolve(client.close()));
  return client;
}

function say(client: EchoClient, text: string): Promise<{ value?: { text: string }; error?: grpc.ServiceError; metadata?: grpc.Metadata; status?: grpc.StatusObject }> {
  return new Promise((resolve) => {
    let metadata: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    let result: { value?: { text: string }; error?: grpc.ServiceError } | undefined;
    const done = (): void => {
      if (result !== undefined && status !== undefined) resolve({ ...result, metadata, status });
    };
    const call = client.Say({ text }, new grpc.Metadata(), (error, value) => {
      result = error === null ? { value } : { error };
      done();
    });
    call.on('metadata', (m: grpc.Metadata) => (metadata = m));
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      done();
    });
  });
}

describe('h2c retries', () => {
  it('retries retriable statuses with attempt counting until one succeeds', async () => {
    const seen: string[] = [];
    const up = await h2Upstream((stream, headers, n) => {
      seen.push(String(headers['x-envoy-attempt-count']));
      stream.respond({ ':status': n <= 2 ? 503 : 200 });
      stream.end(`try ${n}`);
    });
    const h = await proxy(serviceConfig(up.port, 'http2', route({ retries: { attempts: 3, retryOn: 'retriable-status-codes', backoffBaseMs: 1 } })));
    const r = await h2call(h.port, '/r');
    expect(r.status).toBe(200);
    expect(r.body).toBe('try 3');
    expect(up.hits()).toBe(3);
    expect(seen).toEqual(['1', '2', '3']);
    await settle();
    expect(h.accessLines.at(-1)).toMatchObject({ protocol: 'HTTP/2', upstream_attempts: 3, response_code: 200, response_flags: '-' });
  });

  it('forwards the last answer flagged URX when the attempts run out', async () => {
    const up = await h2Upstream((stream) => {
      stream.respond({ ':status': 503 });
      stream.end('down');
    });
    const h = await proxy(serviceConfig(up.port, 'http2', route({ retries: { attempts: 2, retryOn: '5xx', backoffBaseMs: 1 } })));
    const r = await h2call(h.port, '/');
    expect(r.status).toBe(503);
    expect(r.body).toBe('down');
    expect(up.hits()).toBe(3);
    await settle();
    expect(h.proxy.telemetry.count({ response_code: '503', response_flags: 'URX' })).toBe(1);
  });

  it('retries a gRPC call on UNAVAILABLE, in a trailers-only answer and in trailers after headers', async () => {
    const up = await grpcServer((_call, cb, n) => (n <= 2 ? cb({ code: grpc.status.UNAVAILABLE, details: 'warming up' }) : cb(null, { text: `ok ${n}` })));
    const h = await proxy(serviceConfig(up.port, 'grpc', route({ retries: { attempts: 3, retryOn: 'unavailable', backoffBaseMs: 1 } })));
    const r = await say(grpcClient(h.port), 'x');
    expect(r.value).toEqual({ text: 'ok 3' });
    expect(up.hits()).toBe(3);

    // Headers first, then trailers carrying the status (what servers that flush metadata early do).
    const raw = await h2Upstream((stream, _headers, n) => {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers(n === 1 ? { 'grpc-status': '14', 'grpc-message': 'later' } : { 'grpc-status': '0' }));
        if (n === 1) stream.end();
        else stream.end(Buffer.concat([Buffer.from([0, 0, 0, 0, 13]), Buffer.from('{"text":"ok"}')]));
      });
    });
    const h2 = await proxy(serviceConfig(raw.port, 'grpc', route({ retries: { attempts: 2, retryOn: 'unavailable', backoffBaseMs: 1 } })));
    const r2 = await say(grpcClient(h2.port), 'y');
    expect(r2.value).toEqual({ text: 'ok' });
    expect(raw.hits()).toBe(2);
    await settle();
    expect(h2.accessLines.at(-1)).toMatchObject({ upstream_attempts: 2, grpc_status: '0' });
  });

  it('gives up on a gRPC status with URX once the attempts are used', async () => {
    const up = await grpcServer((_call, cb) => cb({ code: grpc.status.UNAVAILABLE, details: 'always down' }));
    const h = await proxy(serviceConfig(up.port, 'grpc', route({ retries: { attempts: 1, retryOn: 'unavailable', backoffBaseMs: 1 } })));
    const r = await say(grpcClient(h.port), 'x');
    expect(r.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.error?.details).toBe('always down');
    expect(up.hits()).toBe(2);
    await settle();
    expect(h.proxy.telemetry.count({ grpc_response_status: '14', response_flags: 'URX' })).toBe(1);
  });

  it('retries connect failures on another endpoint', async () => {
    const up = await h2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('alive');
    }, '127.0.0.2');
    // svc-2 has the service's port but nothing listens there: every request that lands on it must go again.
    const config = serviceConfig(up.port, 'http2', {
      workloads: [{ name: 'svc-2', addresses: ['127.0.0.3'], labels: { app: 'svc' } }],
      ...route({ retries: { attempts: 2, retryOn: 'connect-failure', backoffBaseMs: 1 } }),
    });
    config.workloads[0]!.addresses = ['127.0.0.2'];
    const h = await proxy(config);
    for (let i = 0; i < 4; i++) {
      const r = await h2call(h.port, `/c${i}`);
      expect(r.status).toBe(200);
      expect(r.body).toBe('alive');
    }
    await settle();
    expect(h.accessLines.some((l) => l.upstream_attempts === 2)).toBe(true);
  });

  it('retries a reset GET, never a reset POST whose body was sent, and answers a refused stream again for free', async () => {
    let refusals = 0;
    const up = await h2Upstream((stream, headers, n) => {
      if (headers[':path'] === '/refuse' && refusals++ === 0) return void stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      if (headers[':path'] === '/refuse') {
        void readBody(stream).then(({ body }) => {
          stream.respond({ ':status': 200 });
          stream.end(`got ${body}`);
        });
        return;
      }
      if (headers[':method'] === 'POST' || n === 1) return void stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    const h = await proxy(serviceConfig(up.port, 'http2', route({ match: [{ path: { prefix: '/r' } }], retries: { attempts: 2, retryOn: 'reset', backoffBaseMs: 1 } })));
    const g = await h2call(h.port, '/reset');
    expect(g.status).toBe(200);
    expect(up.hits()).toBe(2);
    const p = await h2call(h.port, '/reset', { body: 'payload' });
    expect(p.status).toBe(503);
    expect(p.headers['x-weft-error']).toBe('WEFT_ERR_UPSTREAM_RESET');
    expect(up.hits()).toBe(3);
    // REFUSED_STREAM: the upstream never processed it (RFC 9113 §8.7), so even a POST goes again, once.
    const refused = await h2call(h.port, '/refuse', { body: 'twice' });
    expect(refused.status).toBe(200);
    expect(refused.body).toBe('got twice');
    expect(up.hits()).toBe(5);
  });

  it('limits concurrent retries by the retry budget (flag UO)', async () => {
    const up = await h2Upstream((stream) => {
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 503 });
        stream.end();
      }, 30);
    });
    const h = await proxy(serviceConfig(up.port, 'http2', route({ retries: { attempts: 3, retryOn: '5xx', budgetPercent: 0, minRetryConcurrency: 1, backoffBaseMs: 1 } })));
    const results = await Promise.all(Array.from({ length: 8 }, () => h2call(h.port, '/')));
    expect(results.every((r) => r.status === 503)).toBe(true);
    expect(up.hits()).toBeLessThan(20);
    await settle();
    expect(h.proxy.telemetry.count({ response_flags: 'UO' })).toBeGreaterThan(0);
  });

  it('retries an attempt that passes its per-try timeout', async () => {
    const up = await h2Upstream((stream, _h, n) => {
      if (n === 1) return void setTimeout(() => stream.destroyed || (stream.respond({ ':status': 200 }), stream.end('slow')), 3000);
      stream.respond({ ':status': 200 });
      stream.end('fast');
    });
    const h = await proxy(serviceConfig(up.port, 'http2', route({ timeoutMs: 5000, retries: { attempts: 2, perTryTimeoutMs: 200, retryOn: 'gateway-error', backoffBaseMs: 1 } })));
    const r = await h2call(h.port, '/');
    expect(r.status).toBe(200);
    expect(r.body).toBe('fast');
    expect(up.hits()).toBe(2);
  });

  it('retries an h2c client of an HTTP/1.1 service too, replaying the body', async () => {
    let hits = 0;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        res.statusCode = ++hits === 1 ? 503 : 200;
        res.end(`h1 ${body}`);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const h = await proxy(serviceConfig((server.address() as net.AddressInfo).port, 'http', route({ retries: { attempts: 2, retryOn: '5xx', backoffBaseMs: 1 } })));
    const r = await h2call(h.port, '/down', { body: 'again' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('h1 again');
    expect(hits).toBe(2);
  });
});

describe('h2c streaming with a retry policy in place', () => {
  it('streams bodies past the retry buffer both ways, and marks a client that left as DC', async () => {
    const size = 4 * 1024 * 1024 + 17;
    const up = await h2Upstream((stream, headers) => {
      if (headers[':path'] === '/hang') return void stream.respond({ ':status': 200 });
      let n = 0;
      stream.on('data', (c: Buffer) => (n += c.length));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'x-received': String(n) });
        for (let sent = 0; sent < size; sent += 65536) stream.write(Buffer.alloc(Math.min(65536, size - sent), 0x61));
        stream.end();
      });
    });
    const h = await proxy(serviceConfig(up.port, 'http2', route({ retries: { attempts: 2, retryOn: '5xx,reset', backoffBaseMs: 1 } })));
    const r = await h2call(h.port, '/big', { body: Buffer.alloc(size, 0x62) });
    expect(r.status).toBe(200);
    expect(r.headers['x-received']).toBe(String(size));
    expect(r.body.length).toBe(size);

    const client = http2.connect(`http://127.0.0.1:${h.port}`);
    client.on('error', () => undefined);
    cleanups.push(() => Promise.resolve(void client.close()));
    const req = client.request({ ':path': '/hang' }, { endStream: true });
    req.on('error', () => undefined);
    await once(req, 'response');
    req.close(http2.constants.NGHTTP2_CANCEL);
    for (let i = 0; i < 100 && !h.accessLines.some((l) => l.path === '/hang'); i++) await new Promise((res) => setTimeout(res, 10));
    expect(h.accessLines.find((l) => l.path === '/hang')).toMatchObject({ response_code: 200, response_flags: 'DC' });
    expect(h.accessLines.find((l) => l.path === '/big')).toMatchObject({ response_flags: '-', bytes_received: size, bytes_sent: size });
  });
});

describe('h2c mirroring', () => {
  it('mirrors h2c requests and gRPC calls to a shadow service over h2c, bodies included', async () => {
    const up = await h2Upstream((stream) => {
      void readBody(stream).then(({ body }) => {
        stream.respond({ ':status': 200 });
        stream.end(`primary ${body}`);
      });
    });
    const shadowSeen: { authority: string; path: string; body: string }[] = [];
    const shadow = await h2Upstream((stream, headers) => {
      void readBody(stream).then(({ body }) => {
        shadowSeen.push({ authority: String(headers[':authority']), path: String(headers[':path']), body });
        stream.respond({ ':status': 500 });
        stream.end('shadow answers are dropped');
      });
    }, '127.0.0.2');
    const h = await proxy(
      serviceConfig(up.port, 'http2', {
        workloads: [{ name: 'shadow-1', addresses: ['127.0.0.2'], labels: { app: 'shadow' } }],
        services: [{ name: 'shadow', addresses: ['10.96.0.81'], ports: [{ port: 80, targetPort: shadow.port, appProtocol: 'http2' }], selector: { app: 'shadow' } }],
        ...route({ mirror: { service: 'shadow.default', percent: 100 } }),
      }),
    );
    const r = await h2call(h.port, '/copy?x=1', { body: 'payload', headers: { ':authority': 'svc.default:80' } });
    expect(r.status).toBe(200);
    expect(r.body).toBe('primary payload');
    for (let i = 0; i < 100 && shadowSeen.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
    expect(shadowSeen).toEqual([{ authority: 'svc.default-shadow', path: '/copy?x=1', body: 'payload' }]);

    const primary = await grpcServer((call, cb) => cb(null, { text: `primary ${call.request.text}` }));
    const mirrored: string[] = [];
    const shadowGrpc = await grpcServer((call, cb) => {
      mirrored.push(call.request.text);
      cb(null, { text: 'shadow' });
    }, '127.0.0.2');
    const g = await proxy(
      serviceConfig(primary.port, 'grpc', {
        workloads: [{ name: 'shadow-1', addresses: ['127.0.0.2'], labels: { app: 'shadow' } }],
        services: [{ name: 'shadow', addresses: ['10.96.0.81'], ports: [{ port: 80, targetPort: shadowGrpc.port, appProtocol: 'grpc' }], selector: { app: 'shadow' } }],
        ...route({ mirror: { service: 'shadow.default' } }),
      }),
    );
    const answer = await say(grpcClient(g.port), 'hello');
    expect(answer.value).toEqual({ text: 'primary hello' });
    for (let i = 0; i < 100 && mirrored.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
    expect(mirrored).toEqual(['hello']);
  });
});

describe('Wasm plugins on h2c and gRPC', () => {
  async function withPlugin(upstreamPort: number, appProtocol: string, limits: Record<string, number> = {}): Promise<ProxyHarness> {
    const plugins = [pluginConfig('parity', parityUrl)];
    const t = createTestHost();
    expect((await t.host.load(plugins)).ok).toBe(true);
    cleanups.push(() => Promise.resolve(t.host.close()));
    const config = serviceConfig(upstreamPort, appProtocol, { plugins });
    config.services[0]!.annotations = { 'weft.dev/plugins': 'parity' };
    return proxy(config, { plugins: createWasmPlugins(t.host, () => plugins), limits });
  }

  it('buffers both bodies through the plugin, and header edits made in body callbacks reach the upstream and the client', async () => {
    const up = await h2Upstream((stream, headers) => {
      void readBody(stream).then(({ body }) => {
        stream.respond({ ':status': 200, 'x-upstream-body': body, 'x-upstream-size': String(headers['x-req-body-size']), 'content-length': String('response text'.length) });
        stream.end('response text');
      });
    });
    const h = await withPlugin(up.port, 'http2');
    const r = await h2call(h.port, '/buffer', { body: 'hello', headers: { 'content-length': '5' } });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream-body']).toBe('<hello>');
    expect(r.headers['x-upstream-size']).toBe('5');
    expect(r.body).toBe('RESPONSE TEXT');
    expect(r.headers['x-res-body-size']).toBe('13');
    expect(r.headers['content-length']).toBe('13');
  });

  it('runs body and trailers callbacks on gRPC calls, with header edits from the body callbacks in the metadata', async () => {
    let upstreamSaw: string[] = [];
    const up = await grpcServer((call, cb) => {
      upstreamSaw = call.metadata.get('x-req-body-size').map(String);
      cb(null, { text: `echo ${call.request.text}` });
    });
    const h = await withPlugin(up.port, 'grpc');
    const r = await say(grpcClient(h.port), 'hi');
    expect(r.value).toEqual({ text: 'echo hi' });
    // 5-byte gRPC frame header + {"text":"hi"}.
    expect(upstreamSaw).toEqual([String(5 + '{"text":"hi"}'.length)]);
    expect(r.metadata?.get('x-res-body-size')).toEqual([String(5 + '{"text":"echo hi"}'.length)]);
    expect(r.status?.metadata.get('x-res-trailer-seen')).toHaveLength(1);
  });

  it('runs request trailers through the plugin before they reach the upstream', async () => {
    const up = await h2Upstream((stream) => {
      void readBody(stream).then(({ body, trailers }) => {
        stream.respond({ ':status': 200 });
        stream.end(JSON.stringify({ body, trailer: trailers?.['x-client-trailer'], seen: trailers?.['x-req-trailer-seen'] }));
      });
    });
    const h = await withPlugin(up.port, 'http2');
    const r = await h2call(h.port, '/trailers', { body: 'data', trailers: { 'x-client-trailer': 'one' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ body: 'data', trailer: 'one', seen: '1' });
  });

  it('answers 413 for a request body and 500 for a response body beyond the buffering limit', async () => {
    const up = await h2Upstream((stream) => {
      void readBody(stream).then(() => {
        stream.respond({ ':status': 200 });
        stream.end(Buffer.alloc(4096, 0x61));
      });
    });
    const h = await withPlugin(up.port, 'http2', { maxBufferedBodyBytes: 1024 });
    const big = await h2call(h.port, '/up', { body: Buffer.alloc(4096, 0x62) });
    expect(big.status).toBe(413);
    expect(big.headers['x-weft-error']).toBe('WEFT_ERR_BODY_TOO_LARGE');
    const small = await h2call(h.port, '/down', { body: 'x' });
    expect(small.status).toBe(500);
    expect(small.headers['x-weft-error']).toBe('WEFT_ERR_BODY_TOO_LARGE');
  });

  it('gives the plugin the downstream peer, the original destination and the picked upstream as source.*, destination.* and upstream.*', async () => {
    const up = await h2Upstream((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    const h = await withPlugin(up.port, 'http2');
    const r = await h2call(h.port, '/props');
    expect(r.status).toBe(200);
    expect(r.headers['x-p-source-port']).toBe(String(r.local.port));
    expect(r.headers['x-p-source-address']).toBe(`127.0.0.1:${r.local.port}`);
    expect(r.headers['x-p-destination-address']).toBe('10.96.0.80:80');
    expect(r.headers['x-p-destination-port']).toBe('80');
    expect(r.headers['x-p-protocol']).toBe('HTTP/2');
    expect(r.headers['x-p-upstream-address']).toBe(`127.0.0.1:${up.port}`);
    // Plain h2c from a client without an mTLS identity.
    expect(r.headers['x-p-mtls']).toBe('false');
  });

  it('gives the plugin the picked upstream as upstream.* on HTTP/1.1 as well', async () => {
    const up = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => up.close(() => r())));
    const port = (up.address() as net.AddressInfo).port;
    const h = await withPlugin(port, 'http');
    const r = await new Promise<http.IncomingMessage>((resolve, reject) => http.get({ port: h.port, host: '127.0.0.1', path: '/props', agent: false }, resolve).on('error', reject));
    r.resume();
    expect(r.statusCode).toBe(200);
    expect(r.headers['x-p-protocol']).toBe('HTTP/1.1');
    expect(r.headers['x-p-upstream-address']).toBe(`127.0.0.1:${port}`);
  });
});
