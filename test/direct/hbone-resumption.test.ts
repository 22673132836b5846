import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HboneClient, HboneError } from '../../runtime/hbone/hbone-client.js';
import type { InboundTunnel } from '../../runtime/hbone/hbone-server.js';
import { TlsSessionCache } from '../../runtime/hbone/tls-session-cache.js';
import tls from 'node:tls';
import { tlsOptionsFor } from '../../runtime/hbone/hbone-tls.js';
import { collectLogs, ID, IP, startEcho, startMesh, type Mesh } from './hbone-fixtures.js';

let mesh: Mesh;
let echo: Awaited<ReturnType<typeof startEcho>>;
const seen: InboundTunnel[] = [];
let deny = false;

beforeAll(async () => {
  mesh = await startMesh({
    authorize: (t) => {
      seen.push(t);
      return deny ? { allowed: false, reason: 'test policy denies' } : { allowed: true };
    },
  });
  echo = await startEcho(IP.server);
});

afterAll(async () => {
  await mesh.close();
  echo.server.close();
});

/** A fresh client (so a new pooled connection and a new TLS handshake) sharing `cache`, as node A's one client does across connections. */
async function roundTrip(cache: TlsSessionCache | undefined, expect: readonly string[] = [ID.server]): Promise<{ client: HboneClient; reply: string; peer: string }> {
  const client = new HboneClient({ certificates: mesh.a.certs, ...(cache === undefined ? { resumeSessions: false } : { sessionCache: cache }) });
  try {
    const s = await client.connect({ sourceIdentity: ID.client, sourceAddress: IP.client, destination: { address: IP.server, port: echo.port }, destinationIdentities: expect, via: { address: IP.server, port: mesh.hbonePort } });
    s.end('ping');
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(c as Buffer);
    return { client, reply: Buffer.concat(chunks).toString(), peer: s.peerIdentity };
  } finally {
    client.close();
  }
}

describe('TLS 1.3 session resumption between weft nodes', () => {
  it('resumes the second connection, and the server still sees the verified client identity', async () => {
    deny = false;
    const cache = new TlsSessionCache();
    const first = await roundTrip(cache);
    expect(first.client.resumedHandshakes).toBe(0);
    const second = await roundTrip(cache);
    expect(second.client.handshakes).toBe(1);
    expect(second.client.resumedHandshakes).toBe(1);
    expect(second.reply).toBe('ping');
    expect(second.peer).toBe(ID.server);
    expect(seen.at(-1)?.sourceIdentity).toBe(ID.client);
  });

  it('a resumed connection still goes through authorization for every CONNECT', async () => {
    const cache = new TlsSessionCache();
    deny = false;
    await roundTrip(cache);
    deny = true;
    const client = new HboneClient({ certificates: mesh.a.certs, sessionCache: cache });
    try {
      const err = await client
        .connect({ sourceIdentity: ID.client, sourceAddress: IP.client, destination: { address: IP.server, port: echo.port }, destinationIdentities: [ID.server], via: { address: IP.server, port: mesh.hbonePort } })
        .then(() => undefined, (e: unknown) => e);
      expect(client.resumedHandshakes).toBe(1);
      expect(err).toBeInstanceOf(HboneError);
      expect((err as HboneError).status).toBe(401);
    } finally {
      client.close();
      deny = false;
    }
  });

  it('checks the server identity on a resumed connection too, and forgets that server tickets on a mismatch', async () => {
    const cache = new TlsSessionCache();
    await roundTrip(cache);
    // The ticket is for the server at this address (identity echo); a caller expecting another identity is refused.
    const err = await roundTrip(cache, [ID.other]).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(HboneError);
    expect((err as HboneError).code).toBe('WEFT_ERR_TLS');
    expect((err as HboneError).message).toContain(ID.server);
    const cert = mesh.a.certs.current(ID.client);
    expect(cert).toBeDefined();
    if (cert !== undefined) expect(cache.get(cert, `${IP.server}:${mesh.hbonePort}`)).toBeUndefined();
  });

  it('the server refuses a resumed session whose client certificate expired since the full handshake', async () => {
    const cert = mesh.ca.issueWorkload(ID.client, { ttlSeconds: 2 });
    // From the client pod's address (localAddress is missing from @types/node's tls.ConnectionOptions, so it is spread in).
    const from = { host: IP.server, port: mesh.hbonePort, localAddress: IP.client };
    /** A raw mTLS client: the server's verdict shows in whether the connection survives its first read. */
    const handshake = (session?: Buffer): Promise<{ reused: boolean; ticket?: Buffer; closedEarly: boolean }> =>
      new Promise((resolve, reject) => {
        const s = tls.connect({ ...tlsOptionsFor(cert), ...from, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, ...(session === undefined ? {} : { session }) });
        let ticket: Buffer | undefined;
        s.on('session', (t: Buffer) => (ticket = t));
        s.on('error', () => undefined);
        let secured = false;
        s.once('secureConnect', () => {
          secured = true;
          const reused = s.isSessionReused();
          // An accepted connection stays open (the server waits for the HTTP/2 preface); a refused one is closed.
          const timer = setTimeout(() => {
            s.destroy();
            resolve({ reused, ...(ticket === undefined ? {} : { ticket }), closedEarly: false });
          }, 300);
          s.once('close', () => {
            clearTimeout(timer);
            resolve({ reused, ...(ticket === undefined ? {} : { ticket }), closedEarly: true });
          });
        });
        s.once('close', () => secured || reject(new Error('closed before the handshake finished')));
      });
    const first = await handshake();
    expect(first.closedEarly).toBe(false);
    expect(first.ticket).toBeDefined();
    await new Promise((r) => setTimeout(r, Date.parse(cert.leaf.validTo) - Date.now() + 200));
    const logs = collectLogs();
    try {
      const second = await handshake(first.ticket);
      expect(second.reused).toBe(true);
      expect(second.closedEarly).toBe(true);
      expect(logs.lines.some((l) => String(l.reason).includes('client certificate of resumed session expired'))).toBe(true);
    } finally {
      logs.restore();
    }
  });

  it('does not resume when turned off', async () => {
    const off = await roundTrip(undefined);
    const again = await roundTrip(undefined);
    expect(off.client.resumedHandshakes + again.client.resumedHandshakes).toBe(0);
    expect(again.reply).toBe('ping');
  });
});

describe('TLS session resumption across a server certificate rotation', () => {
  let rotating: Mesh;
  beforeAll(async () => {
    // Only the server identity gets 2 s certificates, so node A's certificate (and its ticket cache) stays the same.
    rotating = await startMesh({
      caClient: (ca) => ({ fetchCertificate: (identity, ttl) => Promise.resolve(ca.issueWorkload(identity, { ttlSeconds: identity === ID.server ? 2 : ttl })) }),
    });
  });
  afterAll(async () => {
    await rotating.close();
  });

  it('does not resume a session from before the rotation (new ticket keys), and resumes again after a full handshake', async () => {
    const was = mesh;
    mesh = rotating;
    try {
      const cache = new TlsSessionCache();
      await roundTrip(cache);
      const clientCert = rotating.a.certs.current(ID.client);
      await new Promise<void>((resolve) => rotating.b.certs.onRotate((cert, prev) => prev !== undefined && cert.identity === ID.server && resolve()));
      const after = await roundTrip(cache);
      expect(rotating.a.certs.current(ID.client)).toBe(clientCert);
      expect(after.reply).toBe('ping');
      expect(after.client.resumedHandshakes).toBe(0);
      expect((await roundTrip(cache)).client.resumedHandshakes).toBe(1);
    } finally {
      mesh = was;
    }
  });
});
