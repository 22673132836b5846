// One HBONE contract, two data paths: the addon's native TLS and DATA (runtime/hbone/native-tls-socket.ts) and the
// fallback (Node's TLS and node:http2). Apps connect to an entry on node A that tunnels like the L4 proxy does
// (HboneClient#connect, then copyBidirectional), so both ends of the tunnel take their native path when it runs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { copyBidirectional } from '../../runtime/l4/copy.js';
import { HboneClient, HboneError } from '../../runtime/hbone/hbone-client.js';
import { NativeTlsSocket } from '../../runtime/hbone/native-tls-socket.js';
import type { InboundTunnel } from '../../runtime/hbone/hbone-server.js';
import { loadNativeHbone } from '../../runtime/hbone/native-tls-socket.js';
import { ID, IP, startEcho, startMesh, type Mesh } from './hbone-fixtures.js';

const GiB = 1024 * 1024 * 1024;
const nativeBuilt = loadNativeHbone() !== undefined;

/** Writes `total` pseudo-random bytes to `sock` and hashes what comes back, holding no more than a block. */
async function pump(sock: net.Socket, total: number): Promise<{ sentHash: string; gotHash: string; got: number }> {
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let gotBytes = 0;
  const reading = (async () => {
    for await (const c of sock) {
      got.update(c as Buffer);
      gotBytes += (c as Buffer).length;
    }
  })();
  const block = randomBytes(1024 * 1024);
  for (let left = total; left > 0; ) {
    const n = Math.min(left, block.length);
    block[0] = (block[0] ?? 0) ^ (left & 0xff);
    const chunk = n === block.length ? block : block.subarray(0, n);
    sent.update(chunk);
    left -= n;
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  await reading;
  return { sentHash: sent.digest('hex'), gotHash: got.digest('hex'), got: gotBytes };
}

function connected(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: IP.client, port, allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function closedOf(s: net.Socket): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())));
}

/** The app learns the tunnel is gone: a reset (native path) or an end (the fallback's stream copy passes a FIN). */
function endedOf(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed || s.readableEnded) return resolve();
    s.once('close', () => resolve());
    s.once('end', () => resolve());
  });
}

describe.each([
  { path: 'native', dataPath: 'auto' as const },
  { path: 'fallback', dataPath: 'node' as const },
])('HBONE contract on the $path path', ({ path, dataPath }) => {
  let mesh: Mesh;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  const seen: InboundTunnel[] = [];
  const entries: net.Server[] = [];
  const upstreams: net.Server[] = [];
  let deniedPort = -1;

  /** A listener on node A whose connections are tunnelled to IP.server:port, copied as ConnectionProxy copies them. */
  async function entry(port: number): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
      sock.on('error', () => undefined);
      mesh.a.client
        .connect({ sourceIdentity: ID.client, sourceAddress: IP.client, destination: { address: IP.server, port }, destinationIdentities: [ID.server], via: { address: IP.server, port: mesh.hbonePort } })
        .then(
          (stream) => copyBidirectional(sock, stream as unknown as net.Socket, { idleTimeoutMs: 0 }),
          () => sock.destroy(),
        );
    });
    await new Promise<void>((r) => server.listen(0, IP.client, r));
    entries.push(server);
    return (server.address() as net.AddressInfo).port;
  }

  async function upstream(onSocket: (s: net.Socket) => void): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      onSocket(s);
    });
    await new Promise<void>((r) => server.listen(0, IP.server, r));
    upstreams.push(server);
    return (server.address() as net.AddressInfo).port;
  }

  beforeAll(async () => {
    if (path === 'native' && !nativeBuilt) throw new Error('the native addon is not built with HBONE support (npm install builds it)');
    mesh = await startMesh({
      dataPath,
      authorize: (t) => {
        seen.push(t);
        return t.destinationAddr.port === deniedPort ? { allowed: false, reason: 'denied by the test' } : { allowed: true };
      },
    });
    echo = await startEcho(IP.server);
  });

  afterAll(async () => {
    for (const s of [...entries, ...upstreams]) s.close();
    echo.server.close();
    await mesh.close();
  });

  it('carries an exchange with the verified identity, on the path under test; a denied CONNECT gets 401', async () => {
    const before = NativeTlsSocket.counts.streams;
    const sock = await connected(await entry(echo.port));
    const r = await pump(sock, 1000);
    expect(r.gotHash).toBe(r.sentHash);
    expect(seen.at(-1)?.sourceIdentity).toBe(ID.client);
    // Both ends of the tunnel went native (client and server streams), or neither did.
    expect(NativeTlsSocket.counts.streams - before).toBe(path === 'native' ? 2 : 0);

    deniedPort = await upstream((s) => s.end());
    const err = await mesh.a.client
      .connect({ sourceIdentity: ID.client, sourceAddress: IP.client, destination: { address: IP.server, port: deniedPort }, destinationIdentities: [ID.server], via: { address: IP.server, port: mesh.hbonePort } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneError);
    expect((err as HboneError).status).toBe(401);
  });

  // The addon's own accounting: the fallback's TLS state belongs to Node.
  if (path === 'native') it('frees a closed connection\'s TLS state at once, not when its JavaScript handle is collected', async () => {
    const native = loadNativeHbone();
    if (native === undefined) throw new Error('the native addon is not built with HBONE support');
    const baseline = native.hboneHeld();
    // Every client, stream and (through them) NativeTlsSocket stays referenced here, so nothing of theirs can be
    // collected: the old code freed the SSL objects only in the handle's finalizer, and held all 2 × 8 of them.
    const kept: unknown[] = [];
    for (let i = 0; i < 8; i++) {
      const client = new HboneClient({ certificates: mesh.a.certs, resumeSessions: false });
      const stream = await client.connect({ sourceIdentity: ID.client, sourceAddress: IP.client, destination: { address: IP.server, port: echo.port }, destinationIdentities: [ID.server], via: { address: IP.server, port: mesh.hbonePort } });
      stream.end('x');
      let echoed = '';
      for await (const chunk of stream) echoed += (chunk as Buffer).toString();
      expect(echoed).toBe('x');
      kept.push(client, stream);
      expect(native.hboneHeld()).toBeGreaterThan(baseline);
      client.close();
    }
    // Closing ends both ends' connections within a loop turn or two (the server hears the client's FIN).
    for (let i = 0; i < 100 && native.hboneHeld() > baseline; i++) await new Promise((r) => setTimeout(r, 20));
    expect(native.hboneHeld()).toBe(baseline);
    expect(kept).toHaveLength(16);
  });

  it('half-closes each way: a request ended by the client is answered; an upstream that ends first still hears the client', async () => {
    const answering = await upstream((s) => {
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => s.end(`got ${Buffer.concat(got).toString()}`));
    });
    const a = await connected(await entry(answering));
    a.end('request');
    const reply: Buffer[] = [];
    for await (const c of a) reply.push(c as Buffer);
    expect(Buffer.concat(reply).toString()).toBe('got request');

    let heard = '';
    const heardAll = new Promise<void>((resolve) => {
      void upstream((s) => {
        s.end('early');
        s.on('data', (d: Buffer) => (heard += d.toString()));
        s.on('end', () => resolve());
      }).then(async (port) => {
        const b = await connected(await entry(port));
        const first: Buffer[] = [];
        b.on('data', (d: Buffer) => first.push(d));
        await new Promise((r) => b.once('end', r));
        expect(Buffer.concat(first).toString()).toBe('early');
        b.end('late words');
      });
    });
    await heardAll;
    expect(heard).toBe('late words');
  });

  it('carries 1 GiB each way byte-exact', async () => {
    const sock = await connected(await entry(echo.port));
    const r = await pump(sock, GiB);
    expect(r.got).toBe(GiB);
    expect(r.gotHash).toBe(r.sentHash);
  }, 300_000);

  it('keeps each of 16 concurrent streams on one connection byte-exact', async () => {
    const port = await entry(echo.port);
    const results = await Promise.all(Array.from({ length: 16 }, async () => pump(await connected(port), 16 * 1024 * 1024)));
    for (const r of results) {
      expect(r.got).toBe(16 * 1024 * 1024);
      expect(r.gotHash).toBe(r.sentHash);
    }
    const key = Object.keys(mesh.a.client.poolStats()).find((k) => k.startsWith(ID.client));
    expect(key).toBeDefined();
  }, 120_000);

  it('holds a stalled reader to its flow-control window while other streams go on, then delivers every byte', async () => {
    let stalled: net.Socket | undefined;
    const port = await upstream((s) => {
      s.pause();
      stalled = s;
    });
    const sock = await connected(await entry(port));
    const block = Buffer.alloc(256 * 1024, 3);
    let accepted = 0;
    // Write until the tunnel pushes back and stays blocked for a while.
    for (;;) {
      accepted += block.length;
      if (sock.write(block)) continue;
      const drained = await Promise.race([new Promise((r) => sock.once('drain', () => r(true))), new Promise((r) => setTimeout(() => r(false), 1500))]);
      if (!drained) break;
      expect(accepted).toBeLessThan(256 * 1024 * 1024);
    }
    // Stream window 4 MiB, plus the kernel buffers of four loopback sockets and each side's write queue.
    expect(accepted).toBeLessThan(96 * 1024 * 1024);
    const other = await pump(await connected(await entry(echo.port)), 4 * 1024 * 1024);
    expect(other.gotHash).toBe(other.sentHash);
    let got = 0;
    const all = new Promise<void>((resolve) => {
      stalled?.on('data', (d: Buffer) => {
        got += d.length;
        if (got === accepted) resolve();
      });
    });
    stalled?.resume();
    await all;
    expect(got).toBe(accepted);
    sock.destroy();
  }, 60_000);

  /** A raw mTLS connection to node B as node A's client workload, for frames and records no good peer sends. */
  async function rawPeer(socket?: net.Socket): Promise<tls.TLSSocket> {
    const cert = await mesh.a.certs.fetch(ID.client);
    return new Promise((resolve, reject) => {
      const s = tls.connect({
        ...(socket === undefined ? { host: IP.server, port: mesh.hbonePort, localAddress: IP.client } : { socket }),
        key: cert.privateKeyPem,
        cert: cert.certChainPem.join(''),
        ca: cert.rootsPem,
        ALPNProtocols: ['h2'],
        minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined,
      });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  }

  /** A tunnel that must outlive another connection's failure. */
  async function survivor(): Promise<() => Promise<void>> {
    const sock = await connected(await entry(echo.port));
    sock.write('before');
    await new Promise((r) => sock.once('data', r));
    return async () => {
      const back = new Promise<string>((r) => sock.once('data', (d: Buffer) => r(d.toString())));
      sock.write('after');
      expect(await back).toBe('after');
      sock.destroy();
    };
  }

  it('ends only the connection that sends a malformed frame', { timeout: 8000 }, async () => {
    const check = await survivor();
    const raw = await rawPeer();
    raw.on('error', () => undefined);
    const closed = closedOf(raw);
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    // A DATA frame of 16 MiB - 1 on stream 1: past the server's SETTINGS_MAX_FRAME_SIZE (FRAME_SIZE_ERROR).
    const oversized = Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
    raw.resume();
    raw.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), settings, oversized, randomBytes(1024)]));
    await closed;
    await check();
  });

  it('ends only the connection that sends a bad TLS record', async () => {
    const check = await survivor();
    const tcp = net.connect({ host: IP.server, port: mesh.hbonePort, localAddress: IP.client });
    await new Promise((r) => tcp.once('connect', r));
    const raw = await rawPeer(tcp);
    raw.on('error', () => undefined);
    const closed = closedOf(tcp);
    // An application-data record whose AEAD tag cannot verify, written under the TLS layer.
    tcp.write(Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x40]), randomBytes(0x40)]));
    await closed;
    await check();
  });

  it('resets the workload side when the tunnel connection dies mid-stream', { timeout: 8000 }, async () => {
    let onUpstreamClose: () => void = () => undefined;
    let onUpstreamData: () => void = () => undefined;
    const upstreamClosed = new Promise<void>((resolve) => (onUpstreamClose = resolve));
    const flowing = new Promise<void>((resolve) => (onUpstreamData = resolve));
    const port = await upstream((s) => {
      s.once('data', onUpstreamData);
      // The native path resets the workload's connection; the fallback's stream copy passes a FIN.
      void endedOf(s).then(onUpstreamClose);
    });
    const sock = await connected(await entry(port));
    sock.on('error', () => undefined);
    const block = Buffer.alloc(1024 * 1024, 9);
    for (let i = 0; i < 8; i++) sock.write(block);
    await flowing;
    const clientClosed = endedOf(sock);
    // The whole pooled connection goes away at once (the client node's side of the hop).
    mesh.a.client.close();
    await Promise.all([clientClosed, upstreamClosed]);
  });
});
