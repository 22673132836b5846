import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HboneClient, type HboneStream } from '../../runtime/hbone/hbone-client.js';
import { ID, IP, startEcho, startMesh, type Mesh } from './hbone-fixtures.js';

let mesh: Mesh;
let echo: Awaited<ReturnType<typeof startEcho>>;

function open(client: HboneClient): Promise<HboneStream> {
  return client.connect({
    sourceIdentity: ID.client,
    sourceAddress: IP.client,
    destination: { address: IP.server, port: echo.port },
    destinationIdentities: [ID.server],
    via: { address: IP.server, port: mesh.hbonePort },
    timeoutMs: 5000,
  });
}

/** Keeps a tunnel busy with request/response rounds until `until`, counting verified round trips. */
async function converse(stream: HboneStream, until: number): Promise<number> {
  let rounds = 0;
  const payload = Buffer.alloc(32 * 1024, 7);
  while (Date.now() < until) {
    const back = new Promise<void>((resolve, reject) => {
      let got = 0;
      const onData = (d: Buffer): void => {
        got += d.length;
        if (got >= payload.length) {
          stream.off('data', onData);
          resolve();
        }
      };
      stream.on('data', onData);
      stream.once('error', reject);
    });
    stream.write(payload);
    await back;
    rounds++;
  }
  stream.end();
  return rounds;
}

describe.each([
  { path: 'native', dataPath: 'auto' as const },
  { path: 'fallback', dataPath: 'node' as const },
])('certificate rotation under load on the $path path', ({ dataPath }) => {
  beforeAll(async () => {
    // 2 s certificates: both nodes rotate about once a second while traffic runs.
    mesh = await startMesh({ ttlSeconds: 2, dataPath });
    echo = await startEcho(IP.server);
  });

  afterAll(async () => {
    await mesh.close();
    echo.server.close();
  });
  it('rotates certificates on both nodes while long-lived and new tunnels keep working; nothing is dropped', async () => {
    const rotations = { a: 0, b: 0 };
    mesh.a.certs.onRotate((_n, prev) => prev !== undefined && rotations.a++);
    mesh.b.certs.onRotate((_n, prev) => prev !== undefined && rotations.b++);
    const until = Date.now() + 4000;
    const longLived = await Promise.all(Array.from({ length: 8 }, () => open(mesh.a.client)));
    const talking = longLived.map((s) => converse(s, until));
    // Fresh clients force new TLS handshakes, so new connections present (and verify) the rotated certificates.
    let fresh = 0;
    const serials = new Set<string>();
    while (Date.now() < until) {
      const client = new HboneClient({ certificates: mesh.a.certs, dataPath });
      const s = await open(client);
      serials.add(mesh.a.certs.current(ID.client)?.leaf.serialNumber ?? '');
      s.end('hello');
      const chunks: Buffer[] = [];
      for await (const c of s) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).toString()).toBe('hello');
      client.close();
      fresh++;
      await new Promise((r) => setTimeout(r, 50));
    }
    const rounds = await Promise.all(talking);
    expect(rounds.every((r) => r > 10)).toBe(true);
    expect(fresh).toBeGreaterThan(20);
    expect(rotations.a).toBeGreaterThanOrEqual(2);
    expect(rotations.b).toBeGreaterThanOrEqual(2);
    expect(serials.size).toBeGreaterThanOrEqual(2);
  }, 30_000);
});
