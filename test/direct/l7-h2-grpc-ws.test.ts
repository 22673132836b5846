// h2c, gRPC (unary and streaming, with trailers) and WebSocket through weft's L7 path with a filter attached, plus HTTP/2 abuse: rapid reset and CONTINUATION floods end the session.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import crypto from 'node:crypto';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { WebSocket } from 'undici';
import { makeConfig, startProxy, type ProxyHarness } from './l7-harness.js';
import type { L7Filter } from '../../runtime/l7/l7-filter.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** What the filter's streaming body callbacks saw, per request: the bytes and how many calls said end of stream. */
const bodies: { request: string; requestEnds: number; response: string; responseEnds: number }[] = [];

const tagFilter: L7Filter = {
  name: 'tag',
  start: () => {
    const seen = { request: '', requestEnds: 0, response: '', responseEnds: 0 };
    bodies.push(seen);
    return {
      onRequestBody: (c, end) => {
        seen.request += c.toString();
        if (end) seen.requestEnds++;
        return undefined;
      },
      onResponseBody: (c, end) => {
        seen.response += c.toString();
        if (end) seen.responseEnds++;
        return undefined;
      },
      onRequestHeaders: (h) => {
        h.set('x-tagged', 'by-weft');
        return undefined;
      },
      onResponseHeaders: (_s, h) => {
        h.set('x-weft-filter', 'seen');
        return undefined;
      },
      onResponseTrailers: (t) => {
        t.set('x-trailer-filter', 'added');
        return undefined;
      },
    };
  },
};

async function proxyTo(upstreamPort: number, appProtocol: string, limits = {}): Promise<ProxyHarness> {
  const config = makeConfig({
    workloads: [{ name: 'svc-1', addresses: ['127.0.0.1'], labels: { app: 'svc' } }],
    services: [{ name: 'svc', addresses: ['10.96.0.40'], ports: [{ port: 80, targetPort: upstreamPort, appProtocol }], selector: { app: 'svc' } }],
  });
  const h = await startProxy(config, 'svc.default', 80, { extraFilters: () => [tagFilter], limits });
  cleanups.push(() => h.close());
  return h;
}

const json = {
  serialize: (v: unknown): Buffer => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer): unknown => JSON.parse(b.toString()) as unknown,
};

const echoService: grpc.ServiceDefinition = {
  Say: { path: '/test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Count: { path: '/test.Echo/Count', requestStream: false, responseStream: true, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
  Sum: { path: '/test.Echo/Sum', requestStream: true, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize },
};

/** An h2c upstream with `handler` behind the proxy, and an h2c client session to the proxy. */
async function h2cThroughProxy(handler: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void): Promise<{ h: ProxyHarness; client: http2.ClientHttp2Session }> {
  const server = http2.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise((r) => server.close(() => r())));
  const h = await proxyTo((server.address() as net.AddressInfo).port, 'http2');
  const client = http2.connect(`http://127.0.0.1:${h.port}`);
  cleanups.push(() => Promise.resolve(void client.close()));
  return { h, client };
}

describe('L7 h2c and gRPC', () => {
  it('proxies h2c requests with filters, and counts them', async () => {
    const { h, client } = await h2cThroughProxy((req, res) => {
      res.setHeader('x-seen-tag', String(req.headers['x-tagged']));
      res.setHeader('x-seen-trace', String(req.headers.traceparent));
      res.end(`h2 ${req.url}`);
    });
    for (let i = 0; i < 5; i++) {
      const req = client.request({ ':path': `/p${i}` });
      const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      await once(req, 'end');
      expect(headers[':status']).toBe(200);
      expect(headers['x-seen-tag']).toBe('by-weft');
      expect(headers['x-weft-filter']).toBe('seen');
      expect(String(headers['x-seen-trace'])).toMatch(/^00-[0-9a-f]{32}-/);
      expect(body).toBe(`h2 /p${i}`);
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(h.proxy.telemetry.count({ response_code: '200', request_protocol: 'http' })).toBe(5);
  });

  it('tells streaming body filters each piece and, once, the end of a body without trailers', async () => {
    const { client } = await h2cThroughProxy((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        res.write('echo: ');
        res.end(body);
      });
    });
    const req = client.request({ ':method': 'POST', ':path': '/body' });
    req.write('hello ');
    setTimeout(() => req.end('world'), 10);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    await once(req, 'end');
    expect(body).toBe('echo: hello world');
    await new Promise((r) => setTimeout(r, 20));
    expect(bodies.at(-1)).toEqual({ request: 'hello world', requestEnds: 1, response: 'echo: hello world', responseEnds: 1 });
  });

  it('downgrades h2c clients of an HTTP/1.1 service, bodies and filters included', async () => {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        res.setHeader('x-seen-tag', String(req.headers['x-tagged']));
        res.end(`h1 ${req.method ?? ''} ${req.url ?? ''} ${body}`);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const h = await proxyTo((server.address() as net.AddressInfo).port, 'http');
    const client = http2.connect(`http://127.0.0.1:${h.port}`);
    cleanups.push(() => Promise.resolve(void client.close()));
    const req = client.request({ ':path': '/down', ':method': 'POST' });
    req.end('payload');
    const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    await once(req, 'end');
    expect(headers[':status']).toBe(200);
    expect(headers['x-seen-tag']).toBe('by-weft');
    expect(headers['x-weft-filter']).toBe('seen');
    expect(body).toBe('h1 POST /down payload');
  });

  it('proxies gRPC unary, server-streaming and client-streaming calls with trailers and status', async () => {
    const server = new grpc.Server();
    server.addService(echoService, {
      Say: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        if (call.request.text === 'fail') return cb({ code: grpc.status.NOT_FOUND, details: 'nothing here' });
        const md = call.metadata.get('x-tagged');
        cb(null, { text: `echo ${call.request.text}`, tagged: md[0] });
      },
      Count: (call: grpc.ServerWritableStream<{ n: number }, unknown>) => {
        for (let i = 0; i < call.request.n; i++) call.write({ i });
        call.end();
      },
      Sum: (call: grpc.ServerReadableStream<{ v: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        let total = 0;
        call.on('data', (m: { v: number }) => (total += m.v));
        call.on('end', () => cb(null, { total }));
      },
    });
    const grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    cleanups.push(() => new Promise((r) => server.tryShutdown(() => r())));
    const h = await proxyTo(grpcPort, 'grpc');
    const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
    const client = new Client(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
    cleanups.push(() => Promise.resolve(client.close()));

    let trailerSeen: unknown;
    const unary = await new Promise<{ text: string; tagged: string }>((resolve, reject) => {
      const call = client.Say!({ text: 'hi' }, (err: Error | null, v: { text: string; tagged: string }) => (err ? reject(err) : resolve(v))) as grpc.ClientUnaryCall;
      call.on('status', (s: grpc.StatusObject) => (trailerSeen = s.metadata.get('x-trailer-filter')[0]));
    });
    expect(unary).toEqual({ text: 'echo hi', tagged: 'by-weft' });
    await new Promise((r) => setTimeout(r, 10));
    expect(trailerSeen).toBe('added');

    const failed = await new Promise<grpc.ServiceError>((resolve) => client.Say!({ text: 'fail' }, (err: grpc.ServiceError) => resolve(err)));
    expect(failed.code).toBe(grpc.status.NOT_FOUND);
    expect(failed.details).toBe('nothing here');

    const items: number[] = [];
    const stream = client.Count!({ n: 50 }) as grpc.ClientReadableStream<{ i: number }>;
    stream.on('data', (m: { i: number }) => items.push(m.i));
    await once(stream, 'end');
    expect(items).toEqual(Array.from({ length: 50 }, (_, i) => i));

    const sum = await new Promise<{ total: number }>((resolve, reject) => {
      const call = client.Sum!((err: Error | null, v: { total: number }) => (err ? reject(err) : resolve(v))) as grpc.ClientWritableStream<{ v: number }>;
      for (let i = 1; i <= 10; i++) call.write({ v: i });
      call.end();
    });
    expect(sum.total).toBe(55);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.proxy.telemetry.count({ request_protocol: 'grpc', grpc_response_status: '5' })).toBe(1);
    expect(h.proxy.telemetry.count({ request_protocol: 'grpc', grpc_response_status: '0' })).toBe(3);
  });

  it('answers a gRPC call with a trailers-only UNAVAILABLE when the upstream is down', async () => {
    const dead = net.createServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const port = (dead.address() as net.AddressInfo).port;
    dead.close();
    const h = await proxyTo(port, 'grpc');
    const Client = grpc.makeGenericClientConstructor(echoService, 'Echo');
    const client = new Client(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
    cleanups.push(() => Promise.resolve(client.close()));
    const err = await new Promise<grpc.ServiceError>((resolve) => client.Say!({ text: 'x' }, (e: grpc.ServiceError) => resolve(e)));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.metadata.get('x-weft-error')[0]).toBe('WEFT_ERR_UPSTREAM_CONNECT');
  });

  it('closes a session that resets streams faster than the rapid-reset budget', async () => {
    const server = http2.createServer((_req, res) => setTimeout(() => res.end('slow'), 1000));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((r) => server.close(() => r())));
    const h = await proxyTo((server.address() as net.AddressInfo).port, 'http2', { h2MaxResetsPerSecond: 20 });
    const client = http2.connect(`http://127.0.0.1:${h.port}`);
    client.on('error', () => undefined);
    const goaway = new Promise<number>((resolve) => client.on('goaway', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    for (let i = 0; i < 60 && !client.destroyed; i++) {
      const req = client.request({ ':path': `/r${i}` });
      req.on('error', () => undefined);
      req.close(http2.constants.NGHTTP2_CANCEL);
      await new Promise((r) => setImmediate(r));
    }
    const code = await Promise.race([goaway, closed.then(() => -1)]);
    expect([http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, -1]).toContain(code);
    await closed;
  });

  it('closes a session flooded with CONTINUATION frames', async () => {
    const h = await proxyTo(1, 'http2', { maxRequestHeadersBytes: 8192 });
    const sock = net.connect(h.port, '127.0.0.1');
    await once(sock, 'connect');
    const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(payload.length, 0, 3);
      head[3] = type;
      head[4] = flags;
      head.writeUInt32BE(stream, 5);
      return Buffer.concat([head, payload]);
    };
    let received = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
    sock.on('error', () => undefined);
    const closed = once(sock, 'close');
    sock.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    sock.write(frame(0x4, 0, 0, Buffer.alloc(0)));
    // HEADERS without END_HEADERS: a literal header with a 1000-byte value, then endless CONTINUATION frames.
    const literal = (): Buffer => Buffer.concat([Buffer.from([0x00, 0x05]), Buffer.from('x-big'), Buffer.from([0x7f, 0xe9, 0x06]), Buffer.alloc(1000, 0x61)]);
    sock.write(frame(0x1, 0x0, 1, Buffer.concat([Buffer.from([0x82, 0x84, 0x86]), literal()])));
    for (let i = 0; i < 200 && !sock.destroyed; i++) sock.write(frame(0x9, 0x0, 1, literal()));
    await Promise.race([closed, new Promise((r) => setTimeout(r, 3000))]);
    expect(sock.destroyed || sock.readableEnded).toBe(true);
    // A GOAWAY frame (type 7) precedes the close.
    let sawGoaway = false;
    for (let off = 0; off + 9 <= received.length; ) {
      const len = received.readUIntBE(off, 3);
      if (received[off + 3] === 0x7) sawGoaway = true;
      off += 9 + len;
    }
    expect(sawGoaway).toBe(true);
  });
});

describe('L7 WebSocket passthrough', () => {
  it('upgrades through the proxy and echoes frames both ways', async () => {
    const server = http.createServer((_req, res) => res.end('not a websocket'));
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      const accept = crypto.createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\nx-seen-tag: ${String(req.headers['x-tagged'])}\r\n\r\n`);
      let buf = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 6) {
          const len = buf[1]! & 0x7f;
          if (len > 125 || buf.length < 6 + len) return;
          const mask = buf.subarray(2, 6);
          const payload = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]!));
          const opcode = buf[0]! & 0x0f;
          buf = buf.subarray(6 + len);
          if (opcode === 0x8) return void socket.end(Buffer.from([0x88, 0]));
          socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
    const h = await proxyTo((server.address() as net.AddressInfo).port, 'http');
    const ws = new WebSocket(`ws://127.0.0.1:${h.port}/chat`);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('websocket failed to open'));
    });
    const messages: string[] = [];
    const got = new Promise<void>((resolve) => {
      ws.onmessage = (e: { data: unknown }) => {
        messages.push(String(e.data));
        if (messages.length === 3) resolve();
      };
    });
    ws.send('one');
    ws.send('two');
    ws.send('three');
    await got;
    expect(messages).toEqual(['one', 'two', 'three']);
    ws.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(h.proxy.telemetry.count({ response_code: '101' })).toBe(1);
  });
});
