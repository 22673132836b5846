// The HBONE hop on the wire, on both data paths: tshark captures it on loopback and, decrypting with the test's key log,
// must see TLS 1.3 and well-formed HTTP/2 whose DATA frames stay within the receiver's SETTINGS_MAX_FRAME_SIZE.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { HBONE_DEFAULTS } from '../../runtime/config/defaults.js';
import { copyBidirectional } from '../../runtime/l4/copy.js';
import { requireCommands, requireRoot } from '../helpers/requirements.js';
import { ID, IP, startEcho, startMesh } from './hbone-fixtures.js';

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

/**
 * dumpcap on lo for one port; resolves once it captures. "Capturing on" comes before the filter is attached, and under
 * load that took over 500 ms (the whole exchange then went by uncaptured), so the filter also takes UDP datagrams this
 * test sends to itself, and the capture counts as live once one of them has reached the file.
 */
async function capture(port: number, file: string): Promise<{ stop: () => Promise<void> }> {
  const probe = createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
  const probePort = probe.address().port;
  const child: ChildProcess = spawn('dumpcap', ['-q', '-B', '128', '-i', 'lo', '-f', `tcp port ${port} or udp port ${probePort}`, '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let log = '';
  let poll: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dumpcap did not start capturing: ${log}`)), 15_000);
      child.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
        if (!log.includes('Capturing on')) return;
        // The file's headers first (its size without packets), then a probe that lands in it.
        let headers = 0;
        poll = setInterval(() => {
          const size = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
          if (headers === 0) headers = size;
          else if (size > headers) {
            clearTimeout(timer);
            return resolve();
          }
          if (headers > 0) probe.send('probe', probePort, '127.0.0.1');
        }, 50);
        child.stderr?.removeAllListeners('data');
      });
    });
  } finally {
    clearInterval(poll);
    probe.close();
  }
  return {
    stop: async () => {
      // Packets reach dumpcap in blocks; give the last ones a moment before SIGINT closes the file.
      await new Promise((r) => setTimeout(r, 500));
      child.kill('SIGINT');
      await exited;
    },
  };
}

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
    const cap = await capture(mesh.hbonePort, pcap);
    try {
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
    } finally {
      await cap.stop();
      entry.close();
      echo.server.close();
      await mesh.close();
    }
    const keylog = join(dir, 'keys.log');
    writeFileSync(keylog, `${keys.join('\n')}\n`);
    const tshark = (display: string, fields: string[]): Promise<string[][]> =>
      run('tshark', ['-n', '-r', pcap, '-d', `tcp.port==${mesh.hbonePort},tls`, '-o', `tls.keylog_file:${keylog}`, '-Y', display, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])]).then((out) =>
        out
          .split('\n')
          .filter((l) => l.length > 0)
          .map((l) => l.split('|')),
      );
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
