import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import net from 'node:net';
import type { InboundTunnel } from '../../runtime/hbone/hbone-server.js';
import { ID, IP, startEcho, startMesh, type Mesh } from './hbone-fixtures.js';

let mesh: Mesh;
let echo: Awaited<ReturnType<typeof startEcho>>;
const seen: InboundTunnel[] = [];

beforeAll(async () => {
  mesh = await startMesh({
    authorize: (t) => {
      seen.push(t);
      return { allowed: true };
    },
  });
  echo = await startEcho(IP.server);
});

afterAll(async () => {
  await mesh.close();
  echo.server.close();
});

function open(over: Record<string, unknown> = {}) {
  return mesh.a.client.connect({
    sourceIdentity: ID.client,
    sourceAddress: IP.client,
    destination: { address: IP.server, port: echo.port },
    destinationIdentities: [ID.server],
    via: { address: IP.server, port: mesh.hbonePort },
    forwardedFor: { address: IP.client, port: 40000 },
    baggage: 'k8s.namespace.name=default,k8s.pod.name=sleep',
    ...over,
  });
}

/** Writes `total` bytes of pseudo-random data and hashes what comes back, without holding it all in memory. */
async function pump(stream: Duplex, total: number): Promise<{ sentHash: string; gotHash: string; got: number }> {
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let gotBytes = 0;
  const reading = (async () => {
    for await (const c of stream) {
      got.update(c as Buffer);
      gotBytes += (c as Buffer).length;
    }
  })();
  const block = randomBytes(1024 * 1024);
  for (let left = total; left > 0; ) {
    const n = Math.min(left, block.length);
    const chunk = n === block.length ? block : block.subarray(0, n);
    block[0] = (block[0] ?? 0) ^ (left & 0xff); // vary blocks so a reordered or repeated block changes the hash
    sent.update(chunk);
    left -= n;
    if (!stream.write(chunk)) await new Promise((r) => stream.once('drain', r));
  }
  stream.end();
  await reading;
  return { sentHash: sent.digest('hex'), gotHash: got.digest('hex'), got: gotBytes };
}

describe('HBONE between node A and node B', () => {
  it('carries a small exchange exactly, and B sees the SPIFFE identity and the CONNECT headers', async () => {
    const stream = await open();
    expect(stream.peerIdentity).toBe(ID.server);
    const r = await pump(stream, 11);
    expect(r.got).toBe(11);
    expect(r.gotHash).toBe(r.sentHash);
    expect(stream.bytesWritten).toBe(11);
    expect(stream.bytesRead).toBe(11);
    const t = seen.at(-1);
    expect(t?.sourceIdentity).toBe(ID.client);
    expect(t?.destination.name).toBe('echo');
    expect(t?.destinationAddr).toEqual({ address: IP.server, port: echo.port });
    expect(t?.forwardedFor).toEqual({ address: IP.client, port: 40000 });
    expect(t?.baggage['k8s.pod.name']).toBe('sleep');
    expect(t?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(t?.peer.address).toBe(IP.client);
  });

  it('carries 128 MiB each way exactly', async () => {
    const stream = await open();
    const total = 128 * 1024 * 1024;
    const r = await pump(stream, total);
    expect(r.got).toBe(total);
    expect(r.gotHash).toBe(r.sentHash);
  }, 120_000);

  it('pools: many tunnels share one connection up to 100 streams, then a second opens; identities never share', async () => {
    const before = mesh.a.client.handshakes;
    const streams = await Promise.all(Array.from({ length: 120 }, () => open({ sourceIdentity: ID.client2, sourceAddress: IP.client2 })));
    expect(mesh.a.client.handshakes - before).toBe(2);
    const stats = Object.entries(mesh.a.client.poolStats()).find(([k]) => k.startsWith(ID.client2));
    expect(stats?.[1]).toEqual({ connections: 2, streams: 120 });
    await Promise.all(streams.map((s) => pump(s, 100)));
    // a different source identity never shares a connection
    const s2 = await open();
    expect(Object.keys(mesh.a.client.poolStats()).filter((k) => k.startsWith(ID.client)).length).toBe(1);
    await pump(s2, 10);
  });

  it('propagates resets both ways: upstream reset errors the client stream; client reset resets the upstream', async () => {
    const upstreamEvents: string[] = [];
    let resetNext = true;
    const server = net.createServer((sock) => {
      sock.on('error', (e: NodeJS.ErrnoException) => upstreamEvents.push(`error ${e.code ?? ''}`));
      sock.on('close', () => upstreamEvents.push('close'));
      sock.once('data', () => {
        if (resetNext) sock.resetAndDestroy();
        else sock.write('ready');
      });
    });
    await new Promise<void>((r) => server.listen(0, IP.server, r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const s1 = await open({ destination: { address: IP.server, port } });
      const failed = new Promise<Error>((resolve) => s1.once('error', resolve));
      s1.write('boom');
      expect(String(await failed)).toMatch(/reset by the server \(RST_STREAM 10\)|ERR_HTTP2_STREAM_ERROR/);

      resetNext = false;
      const s2 = await open({ destination: { address: IP.server, port } });
      s2.write('hi');
      await new Promise((r) => s2.once('data', r));
      const upstreamClosed = upstreamEvents.length;
      s2.destroy();
      for (let i = 0; i < 100 && upstreamEvents.length === upstreamClosed; i++) await new Promise((r) => setTimeout(r, 10));
      expect(upstreamEvents.slice(upstreamClosed)).toContain('close');
    } finally {
      server.close();
    }
  });
});
