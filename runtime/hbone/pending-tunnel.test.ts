// PendingTunnel over real sockets: writes made before the tunnel opens arrive after it, a failed open is an error
// before 'connect', and a tunnel abandoned while opening closes the stream that opens late.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { PendingTunnel } from './pending-tunnel.js';

let server: net.Server;
let port: number;

beforeAll(async () => {
  // Echoes, then ends when the client ends.
  server = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as net.AddressInfo).port;
});

afterAll(() => {
  server.close();
});

function dialLater(delayMs: number): (signal: AbortSignal) => Promise<net.Socket> {
  return async () => {
    await new Promise((r) => setTimeout(r, delayMs));
    const s = net.connect(port, '127.0.0.1');
    await once(s, 'connect');
    return s;
  };
}

describe('PendingTunnel', () => {
  it('is connecting until the tunnel opens, keeps early writes, and ends when the far side ends', async () => {
    const t = new PendingTunnel(dialLater(30));
    expect(t.connecting).toBe(true);
    t.write('early ');
    const connected = once(t, 'connect');
    await connected;
    expect(t.connecting).toBe(false);
    t.end('late');
    const chunks: Buffer[] = [];
    for await (const c of t) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('early late');
    expect(t.bytesWritten).toBe(10);
    expect(t.bytesRead).toBe(10);
  });

  it('reports a failed open as an error and never connects', async () => {
    const t = new PendingTunnel(() => Promise.reject(new Error('HBONE CONNECT answered 401')));
    let connected = false;
    t.on('connect', () => (connected = true));
    const [err] = (await once(t, 'error')) as [Error];
    expect(err.message).toBe('HBONE CONNECT answered 401');
    expect(connected).toBe(false);
    expect(t.destroyed).toBe(true);
  });

  it('closes the stream that opens after the tunnel was abandoned, and aborts the open', async () => {
    let opened: net.Socket | undefined;
    let aborted = false;
    const t = new PendingTunnel(async (signal) => {
      signal.addEventListener('abort', () => (aborted = true));
      opened = await dialLater(30)(signal);
      return opened;
    });
    t.on('error', () => undefined);
    await new Promise((r) => setImmediate(r));
    t.destroy();
    await once(t, 'close');
    await new Promise((r) => setTimeout(r, 80));
    expect(aborted).toBe(true);
    expect(opened?.destroyed).toBe(true);
  });

  it('does not open at all when destroyed before the open began', async () => {
    let calls = 0;
    const t = new PendingTunnel(async (signal) => {
      calls++;
      return dialLater(0)(signal);
    });
    t.destroy();
    await once(t, 'close');
    expect(calls).toBe(0);
  });
});
