// One contract for the three HTTP/1 transports (the addon's batched I/O, the libuv handle, stream events): data, writes
// with heads, backpressure and drain, half-close, resets reported as errors, pause/resume, and handing the socket back
// to streams for tunnels.
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createHandleTransport } from './http1-handle-transport.js';
import { createNativeTransport } from './http1-native-transport.js';
import { StreamTransport, createHttp1Transport, type Http1Transport, type TransportSink } from './http1-transport.js';

interface Recorder extends TransportSink {
  data: Buffer[];
  ends: number;
  drains: number;
  closed: Promise<Error | undefined>;
  waitFor(bytes: number): Promise<Buffer>;
}

function recorder(): Recorder {
  let closeResolve: (e: Error | undefined) => void = () => {};
  const waiters: { bytes: number; resolve: (b: Buffer) => void }[] = [];
  const r: Recorder = {
    data: [],
    ends: 0,
    drains: 0,
    closed: new Promise((res) => (closeResolve = res)),
    onData(chunk) {
      r.data.push(chunk);
      const all = Buffer.concat(r.data);
      for (const w of waiters.splice(0)) {
        if (all.length >= w.bytes) w.resolve(all);
        else waiters.push(w);
      }
    },
    onEnd: () => r.ends++,
    onDrain: () => r.drains++,
    onClose: (e) => closeResolve(e),
    waitFor(bytes) {
      const all = Buffer.concat(r.data);
      if (all.length >= bytes) return Promise.resolve(all);
      return new Promise((resolve) => waiters.push({ bytes, resolve }));
    },
  };
  return r;
}

const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** A connected pair: `ours` (wrapped by the transport under test) and `peer`, the raw other end. */
async function pair(allowHalfOpen = true): Promise<{ ours: net.Socket; peer: net.Socket }> {
  const server = net.createServer({ allowHalfOpen });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const peer = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await once(peer, 'connect');
  const [ours] = await accepted;
  return { ours, peer };
}

type Make = (socket: net.Socket, sink: TransportSink) => Http1Transport;

const kinds: [string, Make][] = [
  [
    'native',
    (s, sink) => {
      const t = createNativeTransport(s, sink);
      if (t === undefined) throw new Error('the native transport refused a plain TCP socket (is the addon built?)');
      return t;
    },
  ],
  [
    'handle',
    (s, sink) => {
      const t = createHandleTransport(s, sink);
      if (t === undefined) throw new Error('the handle transport refused a plain TCP socket');
      return t;
    },
  ],
  ['stream', (s, sink) => new StreamTransport(s, sink)],
];

describe.each(kinds)('%s transport', (_name, make) => {
  it('delivers reads and sends strings as latin1, buffers, and a head with its body in order', async () => {
    const { ours, peer } = await pair();
    const rec = recorder();
    const t = make(ours, rec);
    peer.write('GET / HTTP/1.1\r\n\r\n');
    expect((await rec.waitFor(18)).toString()).toBe('GET / HTTP/1.1\r\n\r\n');
    const got: Buffer[] = [];
    peer.on('data', (c: Buffer) => got.push(c));
    t.write('é-latin1|');
    t.write(Buffer.from('buf|'));
    t.writeHead('HTTP/1.1 200 OK\r\n\r\n', Buffer.from('ok'));
    t.writeHead('H|', Buffer.alloc(0));
    const expected = Buffer.concat([Buffer.from('é-latin1|', 'latin1'), Buffer.from('buf|HTTP/1.1 200 OK\r\n\r\nokH|')]);
    while (Buffer.concat(got).length < expected.length) await once(peer, 'data');
    expect(Buffer.concat(got)).toEqual(expected);
    t.destroy();
    expect(await rec.closed).toBeUndefined();
    peer.destroy();
  });

  it('splices field lines into a forwarded head before its blank line, with the body after it, also behind a backlog', async () => {
    const { ours, peer } = await pair();
    const rec = recorder();
    const t = make(ours, rec);
    const head = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok', 'latin1').subarray(0, -2);
    const body = Buffer.from('ok');
    peer.pause();
    // A backlog first (the peer reads nothing), so the spliced parts are queued, not sent at once.
    const filler = Buffer.alloc(256 * 1024, 0x2e);
    let fill = 0;
    while (t.write(filler)) if (++fill > 400) throw new Error('write never reported backpressure');
    const backlog = (fill + 1) * filler.length;
    t.writeSpliced(head, 'x-a: é\r\nx-b: 2\r\n', body);
    t.writeSpliced(head, 'x-c: 3\r\n', undefined);
    const expected = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: é\r\nx-b: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-c: 3\r\n\r\n', 'latin1');
    const got: Buffer[] = [];
    let n = 0;
    peer.on('data', (c: Buffer) => {
      got.push(c);
      n += c.length;
    });
    peer.resume();
    while (n < backlog + expected.length) await once(peer, 'data');
    expect(Buffer.concat(got).subarray(backlog)).toEqual(expected);
    t.destroy();
    peer.destroy();
  });

  it('answers false once the peer stops reading and reports drain when the backlog is written', async () => {
    const { ours, peer } = await pair();
    const rec = recorder();
    const t = make(ours, rec);
    peer.pause();
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let writes = 0;
    while (t.write(chunk)) if (++writes > 400) throw new Error('write never reported backpressure');
    let received = 0;
    const total = (writes + 1) * chunk.length;
    peer.on('data', (c: Buffer) => (received += c.length));
    peer.resume();
    while (rec.drains === 0) await new Promise((r) => setTimeout(r, 5));
    while (received < total) await once(peer, 'data');
    expect(received).toBe(total);
    t.destroy();
    peer.destroy();
  });

  it('reports the peer FIN, then closes after its own end once both directions are done', async () => {
    const { ours, peer } = await pair(true);
    const rec = recorder();
    const t = make(ours, rec);
    peer.end('last');
    await rec.waitFor(4);
    while (rec.ends === 0) await new Promise((r) => setTimeout(r, 5));
    expect(ours.destroyed).toBe(false);
    // Half-open: the answer still goes out after the client's FIN.
    const peerGot: Buffer[] = [];
    peer.on('data', (c: Buffer) => peerGot.push(c));
    t.end(Buffer.from('answer'));
    await once(peer, 'end');
    expect(Buffer.concat(peerGot).toString()).toBe('answer');
    expect(await rec.closed).toBeUndefined();
  });

  it('ends its own side when the peer closes and the socket does not allow half-open', async () => {
    const { ours, peer } = await pair(false);
    const rec = recorder();
    make(ours, rec);
    peer.end();
    await once(peer, 'end');
    expect(await rec.closed).toBeUndefined();
    expect(rec.ends).toBe(1);
  });

  it('reports a reset as the error that closed the socket', async () => {
    const { ours, peer } = await pair();
    const rec = recorder();
    make(ours, rec);
    peer.resetAndDestroy();
    const err = await rec.closed;
    expect(err).toMatchObject({ code: 'ECONNRESET' });
  });

  it('stops delivering data while paused and resumes without losing bytes', async () => {
    const { ours, peer } = await pair();
    const rec = recorder();
    const t = make(ours, rec);
    t.pause();
    peer.write('during-pause');
    await new Promise((r) => setTimeout(r, 30));
    expect(rec.data.length).toBe(0);
    t.resume();
    expect((await rec.waitFor(12)).toString()).toBe('during-pause');
    t.destroy();
    peer.destroy();
  });

  it('hands the socket back to streams: later bytes arrive as data events, writes go through the socket', async () => {
    const { ours, peer } = await pair();
    const rec = recorder();
    const t = make(ours, rec);
    peer.write('before');
    await rec.waitFor(6);
    const sock = t.release();
    const later: Buffer[] = [];
    sock.on('data', (c: Buffer) => later.push(c));
    peer.write('after');
    while (Buffer.concat(later).length < 5) await once(sock, 'data');
    expect(Buffer.concat(later).toString()).toBe('after');
    expect(Buffer.concat(rec.data).toString()).toBe('before');
    sock.write('back');
    const [echo] = (await once(peer, 'data')) as [Buffer];
    expect(echo.toString()).toBe('back');
    sock.destroy();
    peer.destroy();
  });
});

describe('createHttp1Transport', () => {
  it('keeps sockets that are not plain TCP, or that have bytes buffered, on streams', async () => {
    const { ours, peer } = await pair();
    ours.write('queued-before');
    const busy = createHttp1Transport(ours, recorder());
    // Either the write went out at once (nothing queued: handles) or it is still queued (streams); both are fine,
    // what must hold is that a queued write is never overtaken.
    expect(busy instanceof StreamTransport).toBe(ours.writableLength > 0);
    busy.destroy();
    peer.destroy();
    const { PassThrough } = await import('node:stream');
    const duplex = new PassThrough();
    expect(createHttp1Transport(duplex, recorder())).toBeInstanceOf(StreamTransport);
    duplex.destroy();
  });
});
