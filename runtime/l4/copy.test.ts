// One contract for every copy path (the native pump, libuv handles and Node streams): bytes, half-close, backpressure, idle timeout, abort, resets.
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { copyBidirectional, type CopyOptions, type CopyResult } from './copy.js';

const open: net.Server[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** A client ⇄ [copy] ⇄ upstream pair on real loopback sockets; `upstreamSide` is the far end the test drives. */
async function pair(opts: CopyOptions): Promise<{ client: net.Socket; upstreamSide: net.Socket; proxySides: net.Socket[]; result: Promise<CopyResult> }> {
  const upstreamServer = net.createServer({ allowHalfOpen: true });
  const proxyServer = net.createServer({ allowHalfOpen: true });
  open.push(upstreamServer, proxyServer);
  await new Promise<void>((r) => upstreamServer.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => proxyServer.listen(0, '127.0.0.1', r));
  const upstreamSide = new Promise<net.Socket>((r) => upstreamServer.once('connection', r));
  // Wrapped in an object: resolving with the bare promise would adopt it and wait for the copy to finish.
  let copying: (r: { result: Promise<CopyResult>; proxySides: net.Socket[] }) => void = () => undefined;
  const started = new Promise<{ result: Promise<CopyResult>; proxySides: net.Socket[] }>((resolve) => (copying = resolve));
  proxyServer.once('connection', (downstream: net.Socket) => {
    const up = net.connect({ port: (upstreamServer.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true }, () => copying({ result: copyBidirectional(downstream, up, opts), proxySides: [downstream, up] }));
  });
  const client = net.connect({ port: (proxyServer.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => client.once('connect', r));
  // Hand the pair to the test only once the copy runs, so what the test does next happens to a live copy.
  const { result, proxySides } = await started;
  return { client, upstreamSide: await upstreamSide, proxySides, result };
}

function collect(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

describe.each(['auto', 'handles', 'streams'] as const)('copyBidirectional (%s path)', (path) => {
  it('copies both ways, keeps each direction open after the other half-closes, and counts bytes', async () => {
    const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 0, path });
    const atUpstream = collect(upstreamSide);
    client.end('request');
    expect((await atUpstream).toString()).toBe('request');
    // The client's FIN arrived upstream; the response direction is still open.
    const atClient = collect(client);
    upstreamSide.end('response after FIN');
    expect((await atClient).toString()).toBe('response after FIN');
    expect(await result).toEqual({ bytesReceived: 7, bytesSent: 18, reason: 'complete' });
  });

  it('moves 32 MiB through a slow reader byte-exact (backpressure)', async () => {
    const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 0, path });
    const data = randomBytes(32 * 1024 * 1024);
    const hash = createHash('sha256');
    let got = 0;
    upstreamSide.on('data', (c: Buffer) => {
      hash.update(c);
      got += c.length;
      // Read slowly: the proxy must stop reading the client instead of buffering everything.
      upstreamSide.pause();
      setImmediate(() => upstreamSide.resume());
    });
    const ended = new Promise((r) => upstreamSide.once('end', r));
    client.end(data);
    await ended;
    upstreamSide.end();
    client.resume();
    expect(got).toBe(data.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect((await result).bytesReceived).toBe(data.length);
  });

  it('closes an idle connection after idleTimeoutMs', async () => {
    const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 150, path });
    upstreamSide.resume();
    client.resume();
    client.write('x');
    const r = await result;
    expect(r.reason).toBe('idle_timeout');
    expect(r.bytesReceived).toBe(1);
  });

  it('ends both sides when the abort signal fires, with the drain or policy reason', async () => {
    for (const why of ['drained', 'policy'] as const) {
      const controller = new AbortController();
      const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 0, signal: controller.signal, path });
      client.resume();
      upstreamSide.resume();
      const clientClosed = new Promise((r) => client.once('close', r));
      client.on('error', () => undefined);
      controller.abort(why === 'policy' ? 'policy' : undefined);
      expect((await result).reason).toBe(why);
      client.destroy();
      await clientClosed;
    }
  });

  it('ends in order at the drain deadline: FIN both ways, never a reset, while the client keeps writing', async () => {
    const controller = new AbortController();
    const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 0, signal: controller.signal, path });
    const errors: string[] = [];
    // An echo upstream and a client that writes until the far side ends, then ends its own (as applications do).
    upstreamSide.on('error', (e: Error) => errors.push(`upstream: ${e.message}`));
    upstreamSide.on('data', (d: Buffer) => upstreamSide.writable && upstreamSide.write(d));
    upstreamSide.once('end', () => upstreamSide.end());
    client.on('error', (e: Error) => errors.push(`client: ${e.message}`));
    client.resume();
    client.once('end', () => client.end());
    const writer = setInterval(() => client.writable && client.write(randomBytes(4096)), 1);
    const closed = Promise.all([client, upstreamSide].map((s) => new Promise((r) => s.once('close', r))));
    await new Promise((r) => setTimeout(r, 50));
    controller.abort();
    await closed;
    clearInterval(writer);
    expect(errors).toEqual([]);
    expect((await result).reason).toBe('drained');
  });

  it('ends in order at the drain deadline with bytes unread on both proxy sockets (a stalled upstream), still without a reset', async () => {
    const controller = new AbortController();
    const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 0, signal: controller.signal, path });
    const errors: string[] = [];
    client.on('error', (e: Error) => errors.push(`client: ${e.message}`));
    client.resume();
    client.once('end', () => client.end());
    // The upstream reads nothing: the copy stops reading the client, whose bytes pile up unread in the proxy's socket.
    upstreamSide.pause();
    upstreamSide.on('error', (e: Error) => errors.push(`upstream: ${e.message}`));
    const block = randomBytes(1024 * 1024);
    for (let i = 0; i < 48; i++) client.write(block);
    await new Promise((r) => setTimeout(r, 100));
    const clientClosed = new Promise((r) => client.once('close', r));
    controller.abort();
    await clientClosed;
    expect((await result).reason).toBe('drained');
    // The upstream that never read gets what reached its socket and then an end; a reset would surface as an error.
    const upstreamEnded = new Promise((r) => upstreamSide.once('end', r));
    upstreamSide.resume();
    await upstreamEnded;
    expect(errors).toEqual([]);
  });

  it('reports an upstream reset', async () => {
    const { client, upstreamSide, result } = await pair({ idleTimeoutMs: 0, path });
    client.on('error', () => undefined);
    client.resume();
    upstreamSide.resetAndDestroy();
    const r = await result;
    expect(r.reason).toBe('upstream_reset');
    expect(r.error?.message).toMatch(/ECONNRESET/);
  });
});

describe('copyBidirectional on the native pump', () => {
  it('takes the connection off Node: both proxy-side sockets are closed while bytes keep flowing both ways', async () => {
    // CI builds the addon at install, so the auto path must be the pump there, not a silent fallback to handle-copy.
    const { client, upstreamSide, proxySides, result } = await pair({ idleTimeoutMs: 0 });
    expect(proxySides.map((s) => s.destroyed)).toEqual([true, true]);
    const atUpstream = collect(upstreamSide);
    const atClient = collect(client);
    client.write('ping');
    upstreamSide.write('pong');
    client.end();
    upstreamSide.end();
    expect((await atUpstream).toString()).toBe('ping');
    expect((await atClient).toString()).toBe('pong');
    expect(await result).toEqual({ bytesReceived: 4, bytesSent: 4, reason: 'complete' });
  });
});
