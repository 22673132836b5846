// The HBONE hop on the wire, on both data paths: tshark captures it on loopback and, decrypting with the test's key log,
// must see TLS 1.3 and well-formed HTTP/2 whose DATA frames stay within the receiver's SETTINGS_MAX_FRAME_SIZE.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { HBONE_DEFAULTS } from '../../runtime/config/defaults.js';
import { copyBidirectional } from '../../runtime/l4/copy.js';
import { captureArmed, readCapture, startCapture } from '../helpers/packet-capture.js';
import { requireCommands, requireRoot } from '../helpers/requirements.js';
import { ID, IP, startEcho, startMesh } from './hbone-fixtures.js';

describe.each([
  { path: 'native', dataPath: 'auto' as const },
  { path: 'fallback', dataPath: 'node' as const },
])('HBONE wire format on the $path path', ({ path, dataPath }) => {
  it('is TLS 1.3 carrying valid HTTP/2, DATA frames within the peer max frame size', async (ctx) => {
    requireRoot(ctx);
    requireCommands(ctx, 'tshark', 'dumpcap');
    const dir = mkdtempSync(join(tmpdir(), 'weft-hbone-wire-'));
    const keys: string[] = [];
    const mesh = await startMesh({ dataPath, onKeylog: (line) => keys.push(line.toString().trimEnd()) });
    const echo = await startEcho(IP.server);
    const entry = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
      void mesh.a.client
        .connect({ sourceIdentity: ID.client, sourceAddress: IP.client, destination: { address: IP.server, port: echo.port }, destinationIdentities: [ID.server], via: { address: IP.server, port: mesh.hbonePort } })
        .then((stream) => copyBidirectional(sock, stream as unknown as net.Socket, { idleTimeoutMs: 0 }));
    });
    await new Promise<void>((r) => entry.listen(0, IP.client, r));
    const pcap = join(dir, 'hop.pcap');
    const cap = await startCapture({ iface: 'lo', filter: `tcp port ${mesh.hbonePort}`, file: pcap });
    let hopPort = '';
    const probePorts = new Set<string>();
    try {
      // Bare TCP connections to the HBONE port (they end before any TLS) until the capture takes them, so the tunnel's
      // handshake cannot slip past a filter not yet attached.
      await captureArmed(cap, async () => {
        const probe = net.connect({ host: IP.server, port: mesh.hbonePort });
        await new Promise<void>((resolve, reject) => probe.once('connect', resolve).once('error', reject));
        const port = probe.localPort ?? 0;
        probePorts.add(String(port));
        probe.destroy();
        return port;
      });
      const total = 2 * 1024 * 1024;
      const sock = net.connect({ host: IP.client, port: (entry.address() as net.AddressInfo).port, allowHalfOpen: true });
      let got = 0;
      const done = new Promise<void>((resolve) => {
        sock.on('data', (d: Buffer) => (got += d.length));
        sock.on('end', () => resolve());
      });
      sock.end(Buffer.alloc(total, 5));
      await done;
      expect(got).toBe(total);
      // The pooled connection's client port: its FIN or reset at the mesh's close is the hop's last segment.
      hopPort = (await cap.seen((s) => s.dstPort === String(mesh.hbonePort) && !probePorts.has(s.srcPort), 5000)).srcPort;
    } finally {
      entry.close();
      echo.server.close();
      await mesh.close();
      if (hopPort !== '') await cap.seen((s) => (s.srcPort === hopPort || s.dstPort === hopPort) && (s.fin || s.reset), 5000).catch(() => undefined);
      await cap.stop();
    }
    const keylog = join(dir, 'keys.log');
    writeFileSync(keylog, `${keys.join('\n')}\n`);
    const tshark = (display: string, fields: string[]): Promise<string[][]> => readCapture(pcap, display, fields, { tlsPorts: [mesh.hbonePort], keylog });
    // TLS 1.3: the ServerHello's supported_versions selects 0x0304.
    const hellos = await tshark('tls.handshake.type == 2', ['tls.handshake.extensions.supported_version']);
    expect(hellos.length).toBeGreaterThan(0);
    for (const [v] of hellos) expect(v).toBe('0x0304');
    // Certificates go uncompressed both ways (no RFC 8879 compress_certificate extension, type 27, and no
    // CompressedCertificate message, type 25): OpenSSL 3.5 offers it by default and compressing cost a quarter of a new
    // connection's CPU on the native path (Node's TLS never offered it).
    expect((await tshark('tls.handshake.type == 11', ['frame.number'])).length).toBeGreaterThanOrEqual(2);
    expect(await tshark('tls.handshake.type == 25 || tls.handshake.extension.type == 27', ['frame.number'])).toEqual([]);
    // Decrypted, the hop is HTTP/2 (the client preface, SETTINGS, the CONNECT) and nothing is malformed.
    const frames = await tshark('http2', ['http2.type', 'http2.length', 'http2.streamid']);
    const types = new Set(frames.flatMap(([t]) => (t ?? '').split(',')));
    expect(types.has('4')).toBe(true); // SETTINGS
    expect(types.has('1')).toBe(true); // HEADERS (CONNECT, 200)
    expect(types.has('0')).toBe(true); // DATA
    expect(await tshark('_ws.malformed || _ws.expert.severity == "error"', ['frame.number'])).toEqual([]);
    // Every DATA frame within the receiver's SETTINGS_MAX_FRAME_SIZE (both ends advertise HBONE's maxFrameBytes).
    const dataLengths = frames.flatMap(([t, l]) => {
      const ts = (t ?? '').split(',');
      const ls = (l ?? '').split(',');
      return ts.flatMap((type, i) => (type === '0' ? [Number(ls[i])] : []));
    });
    // tshark decodes the frames it could reassemble (a capture on a busy loopback can drop segments, after which a
    // TLS stream no longer decrypts): some of the 4 MiB at least.
    expect(dataLengths.reduce((a, b) => a + b, 0)).toBeGreaterThan(64 * 1024);
    for (const n of dataLengths) expect(n).toBeLessThanOrEqual(HBONE_DEFAULTS.maxFrameBytes);
    // The native path writes frames larger than node:http2's 16 KiB.
    if (path === 'native') expect(Math.max(...dataLengths)).toBeGreaterThan(16384);
  }, 120_000);
});
