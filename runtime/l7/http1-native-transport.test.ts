// The addon's batched I/O beyond the contract all transports share (http1-transport.test.ts): writes made while the
// socket is still connecting, bytes the kernel had not taken when a tunnel takes the socket over, and a worker thread
// that ends with connections open (its loop must close with our handles while the process runs on).
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { createNativeTransport } from './http1-native-transport.js';
import { loadNativeSocket, socketFd } from '../native/weft-socket.js';
import type { Http1Transport, TransportSink } from './http1-transport.js';

const quiet: TransportSink = { onData: () => {}, onEnd: () => {}, onDrain: () => {}, onClose: () => {} };
const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function nativeTransport(socket: net.Socket, sink: TransportSink = quiet): Http1Transport {
  const t = createNativeTransport(socket, sink);
  if (t === undefined) throw new Error('the native transport refused a plain TCP socket (is the addon built?)');
  return t;
}

/** A listening server whose accepted sockets come out of `next()` in order, paused (nothing read until asked). */
async function server(): Promise<{ port: number; next: () => Promise<net.Socket> }> {
  const accepted: net.Socket[] = [];
  const waiting: ((s: net.Socket) => void)[] = [];
  const s = net.createServer({ pauseOnConnect: true }, (socket) => {
    const w = waiting.shift();
    if (w === undefined) accepted.push(socket);
    else w(socket);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const next = (): Promise<net.Socket> => {
    const ready = accepted.shift();
    return ready === undefined ? new Promise((r) => waiting.push(r)) : Promise.resolve(ready);
  };
  return { port: (s.address() as net.AddressInfo).port, next };
}

function readAll(socket: net.Socket, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  return new Promise((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      n += chunk.length;
      if (n >= bytes) resolve(Buffer.concat(parts));
    });
    socket.resume();
  });
}

describe('native transport', () => {
  it('sends what was written while the socket was still connecting, once it is up, in order', async () => {
    const { port, next } = await server();
    const socket = net.connect(port, '127.0.0.1');
    const t = nativeTransport(socket);
    t.write('first ');
    t.writeHead('second ', Buffer.from('third'));
    const peer = await next();
    expect((await readAll(peer, 18)).toString()).toBe('first second third');
    t.destroy();
    peer.destroy();
  });

  it('hands the bytes the kernel had not taken to the socket it releases, ahead of later writes', async () => {
    const { port, next } = await server();
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const peer = await next();
    const t = nativeTransport(socket);
    // The peer reads nothing yet: write until the transport asks to wait, so bytes sit in the addon's queue.
    const chunk = Buffer.alloc(64 * 1024);
    let written = 0;
    for (let i = 0; i < 1024; i++) {
      chunk.fill(i % 251);
      written += chunk.length;
      if (!t.write(chunk)) break;
    }
    expect(written).toBeLessThan(1024 * chunk.length);
    const released = t.release();
    released.write(Buffer.from('tail'));
    const got = await readAll(peer, written + 4);
    expect(got.length).toBe(written + 4);
    for (let i = 0; i * chunk.length < written; i++) expect(got[i * chunk.length]).toBe(i % 251);
    expect(got.subarray(written).toString()).toBe('tail');
    released.destroy();
    peer.destroy();
  });

  it('names a connection by slot and id: a closed connection\'s slot, taken by the next one, is not written through', async () => {
    const native = loadNativeSocket();
    if (native?.ioSlot === undefined) throw new Error('the addon lacks ioSlot (is it built?)');
    const { port, next } = await server();
    const connect = async (): Promise<[net.Socket, net.Socket]> => {
      const s = net.connect(port, '127.0.0.1');
      await once(s, 'connect');
      return [s, await next()];
    };
    // Ids of their own (negative): the transport module's connections count up from 1.
    const [a, peerA] = await connect();
    const connA = native.ioOpen!(socketFd(a)!, -1001);
    const slot = native.ioSlot(connA);
    native.ioClose!(connA);
    const [b, peerB] = await connect();
    const connB = native.ioOpen!(socketFd(b)!, -1002);
    expect(native.ioSlot(connB)).toBe(slot);
    // The closed connection's calls do nothing; the one now in the slot is written to.
    expect(native.ioWrite!(slot, -1001, 'stale ')).toBe(0);
    expect(native.ioEnd!(slot, -1001)).toBe(0);
    native.ioPause!(slot, -1001);
    expect(native.ioWrite!(slot, -1002, 'fresh')).toBe(1);
    expect((await readAll(peerB, 5)).toString()).toBe('fresh');
    expect(() => native.ioWrite!('x' as unknown as number, -1002, 'no')).toThrow(TypeError);
    native.ioClose!(connB);
    for (const s of [a, peerA, b, peerB]) s.destroy();
  });

  it('lets a worker thread exit with connections open', async () => {
    const entry = new URL('../../test/helpers/native-transport-worker.ts', import.meta.url).href;
    // Worker threads do not inherit tsx's loader: register it, then load the TypeScript entry.
    const worker = new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`, { eval: true });
    const [message] = (await once(worker, 'message')) as [{ transport: string; data: string }];
    expect(message).toEqual({ transport: 'NativeTransport', data: 'hello' });
    const [code] = (await once(worker, 'exit')) as [number];
    expect(code).toBe(0);
  });
});
