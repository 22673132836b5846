// Two simulated nodes with HBONE workloads: pod-to-pod traffic across nodes crosses the inter-node link as TLS 1.3 on port 15008 (tshark
// sees handshake and application-data records, never the payload), while the last hop inside the destination node stays plaintext.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../runtime/identity/certificate-authority.js';
import { startServer, tcpExchange, type PeerServer } from '../helpers/netns-peers.js';
import { twoLinkedNodes, type SimulatedNode } from '../helpers/netns-topology.js';
import { startRuntime, type RuntimeHandle } from '../helpers/netns-weft-runtime.js';
import { kernelHasLinkType, requireCommands, requireKernelFeature, requireRoot } from '../helpers/requirements.js';

/** One captured TCP segment as tshark prints it while capturing. */
interface Segment {
  src: string;
  srcPort: string;
  dst: string;
  dstPort: string;
  fin: boolean;
  reset: boolean;
}

interface Capture {
  file: string;
  /**
   * Resolves once tshark has processed a segment matching `predicate`. The kernel hands packets to dumpcap in blocks, so a
   * capture stopped right after the traffic can miss its end; waiting for a later segment (a FIN) proves the earlier ones are in.
   */
  seen(predicate: (s: Segment) => boolean, timeoutMs?: number): Promise<Segment>;
  /** Stops tshark (SIGINT, so it closes the pcap properly) and waits for it to exit. */
  stop(): Promise<void>;
}

const SEGMENT_FIELDS = ['ip.src', 'tcp.srcport', 'ip.dst', 'tcp.dstport', 'tcp.flags.fin', 'tcp.flags.reset'];

/** tshark inside `ns` on `iface`, writing packets that pass `filter` to a pcap and printing each segment; resolves once dumpcap reports "Capturing on". */
async function startCapture(ns: string, iface: string, filter: string, file: string): Promise<Capture> {
  const args = ['netns', 'exec', ns, 'tshark', '-n', '-l', '-i', iface, '-f', filter, '-w', file, '-P', '-T', 'fields', ...SEGMENT_FIELDS.flatMap((f) => ['-e', f])];
  const child: ChildProcess = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const segments: Segment[] = [];
  let pending = '';
  child.stdout?.on('data', (d: Buffer) => {
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const [src = '', srcPort = '', dst = '', dstPort = '', fin = '', reset = ''] = line.split('\t');
      segments.push({ src, srcPort, dst, dstPort, fin: fin === '1' || fin === 'True', reset: reset === '1' || reset === 'True' });
    }
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tshark did not start capturing on ${iface} within 15 s: ${log}`)), 15_000);
    child.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('Capturing on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`tshark exited with ${code} before capturing: ${log}`));
    });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return {
    file,
    async seen(predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = segments.find(predicate);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`tshark on ${iface} saw no matching segment within ${timeoutMs} ms; saw ${JSON.stringify(segments)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      child.kill('SIGINT');
      await exited;
    },
  };
}

/** Decoded fields of a pcap, one row per packet that matches `display`; port 15008 is decoded as TLS (Wireshark does not know it). */
async function readCapture(file: string, display: string, fields: string[]): Promise<string[][]> {
  const args = ['-n', '-r', file, '-d', 'tcp.port==15008,tls', '-Y', display, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])];
  const out = await runTshark(args);
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('|'));
}

function runTshark(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('tshark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`tshark ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

describe('two simulated nodes over HBONE', () => {
  it('pod-to-pod across nodes goes over HBONE: tshark sees TLS 1.3 on port 15008 and never the payload', async (ctx) => {
    requireRoot(ctx);
    requireCommands(ctx, 'ip', 'tshark', 'iptables-nft-restore', 'ipset', 'nft', 'flock', 'nsenter', 'unshare', '/usr/lib/cni/bridge', '/usr/lib/cni/ptp');
    requireKernelFeature(ctx, 'vxlan', kernelHasLinkType('vxlan'));
    const nodes: SimulatedNode[] = [];
    const runtimes: RuntimeHandle[] = [];
    const servers: PeerServer[] = [];
    const captures: Capture[] = [];
    try {
      const { n1, n2, a, b } = await twoLinkedNodes(nodes);
      // One mesh root shared by both nodes, written before either starts, so each trusts the other's workload certificates.
      const caDir = path.join(n1.workDir, 'ca');
      CertificateAuthority.load({ trustDomain: 'cluster.local', caDir });
      const workloads = [
        { name: 'a', namespace: 'mesh', serviceAccount: 'sa-a', ip: a.ip, node: 1, protocol: 'HBONE' as const },
        { name: 'b', namespace: 'mesh', serviceAccount: 'sa-b', ip: b.ip, node: 2, protocol: 'HBONE' as const },
      ];
      runtimes.push(await startRuntime(n1, { workloads, hbone: { caDir } }), await startRuntime(n2, { workloads, hbone: { caDir } }));
      const [w1, w2] = runtimes as [RuntimeHandle, RuntimeHandle];
      servers.push(await startServer(b.ns, 'tcp', 8080));

      // The inter-node link as node 2 sees it, and node 2's pod bridge, where its weft hands the tunnel's bytes to pod b in plaintext.
      const link = await startCapture(n2.nodeNs, `wl${n1.index}`, 'tcp port 15008', path.join(n2.workDir, 'link.pcap'));
      captures.push(link);
      const bridge = await startCapture(n2.nodeNs, n2.bridge, 'tcp port 8080', path.join(n2.workDir, 'bridge.pcap'));
      captures.push(bridge);

      const marker = `weft-hbone-marker-${process.pid}-${Date.now()}`;
      // The echo server greets with the peer it saw (node 2's weft) and echoes the marker line byte for byte.
      expect(await tcpExchange(a.ns, b.ip, 8080, marker)).toBe(n2.runtimeIp);
      const outbound = await w1.waitFor((l) => l.direction === 'outbound' && l.dst === `${b.ip}:8080`);
      const inbound = await w2.waitFor((l) => l.raw.listener === 'hbone' && l.raw.upstream_host === `${b.ip}:8080`);
      // Pod b's FIN follows the echoed marker on the bridge. Stopping node 1's weft ends its pooled tunnel connection: its FIN
      // (or RST) is the last segment on the link, after every record of the exchange.
      await bridge.seen((s) => s.src === b.ip && s.srcPort === '8080' && s.fin);
      await w1.stop();
      await link.seen((s) => s.src === n1.runtimeIp && s.dstPort === '15008' && (s.fin || s.reset));
      await link.stop();
      await bridge.stop();
      captures.length = 0;

      expect(outbound.raw).toMatchObject({ connection_security_policy: 'mutual_tls', source_principal: 'spiffe://cluster.local/ns/mesh/sa/sa-a', destination_principal: 'spiffe://cluster.local/ns/mesh/sa/sa-b' });
      expect(inbound.raw).toMatchObject({
        connection_security_policy: 'mutual_tls',
        source_principal: 'spiffe://cluster.local/ns/mesh/sa/sa-a',
        destination_workload: 'b',
        // The marker line out, the greeting and the echoed line back.
        bytes_received: marker.length + 1,
        bytes_sent: `from ${n2.runtimeIp}\n`.length + marker.length + 1,
      });
      // The tunnel's `forwarded` header carries pod a's own address to node 2.
      expect(String(inbound.raw.source_address)).toMatch(new RegExp(`^${a.ip.replaceAll('.', '\\.')}:`));

      // On the link: a TLS 1.3 handshake (ClientHello advertising 1.3, ServerHello) and application data on 15008, to b's pod IP.
      // TLS 1.3 puts the real type inside the encryption: encrypted records show as opaque_type 23 (application_data).
      const records = await readCapture(link.file, 'tls.record', ['ip.dst', 'tcp.dstport', 'tls.record.content_type', 'tls.record.opaque_type', 'tls.handshake.type', 'tls.handshake.extensions.supported_version']);
      const list = (row: string[], i: number): string[] => (row[i] ?? '').split(',').filter((v) => v !== '');
      const contentTypes = new Set(records.flatMap((r) => [...list(r, 2), ...list(r, 3)]));
      expect(contentTypes).toContain('22');
      expect(contentTypes).toContain('23');
      const clientHello = records.find((r) => list(r, 4).includes('1'));
      expect(clientHello?.slice(0, 2)).toEqual([b.ip, '15008']);
      expect(list(clientHello ?? [], 5)).toContain('0x0304');
      const serverHello = records.find((r) => list(r, 4).includes('2'));
      expect(list(serverHello ?? [], 5)).toEqual(['0x0304']);
      const appData = records.filter((r) => list(r, 3).includes('23'));
      expect(appData.length).toBeGreaterThanOrEqual(4);

      // The marker never crossed the link in the clear: not in the raw pcap, not in the TCP payloads joined in capture order.
      const linkPcap = readFileSync(link.file);
      expect(linkPcap.length).toBeGreaterThan(1000);
      expect(linkPcap.includes(marker)).toBe(false);
      const linkPayload = (await readCapture(link.file, 'tcp.len > 0', ['tcp.payload'])).map((r) => r[0] ?? '').join('');
      expect(linkPayload.length).toBeGreaterThan(0);
      expect(Buffer.from(linkPayload.replaceAll(':', ''), 'hex').includes(marker)).toBe(false);
      // The same capture method does see it where the bytes travel in plaintext (node 2's weft to pod b), so the check above can fail.
      expect(readFileSync(bridge.file).includes(marker)).toBe(true);
    } finally {
      for (const c of captures) await c.stop();
      for (const s of servers) s.stop();
      for (const r of runtimes) await r.stop();
      for (const n of nodes) await n.destroy();
    }
  }, 120_000);
});
