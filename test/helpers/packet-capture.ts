// Live packet captures for wire tests: tshark writes a pcap while printing each TCP segment it takes, so a test can wait
// until the capture really sees traffic and until the last segment it needs is in, then decode the pcap.
import { spawn, type ChildProcess } from 'node:child_process';

/** One captured TCP segment as tshark prints it while capturing. */
export interface Segment {
  src: string;
  srcPort: string;
  dst: string;
  dstPort: string;
  fin: boolean;
  reset: boolean;
}

export interface Capture {
  file: string;
  /**
   * Resolves once tshark has processed a segment matching `predicate`. The kernel hands packets to dumpcap in blocks, so a
   * capture stopped right after the traffic can miss its end; waiting for a later segment (a FIN) proves the earlier ones are in.
   */
  seen(predicate: (s: Segment) => boolean, timeoutMs?: number): Promise<Segment>;
  /** Stops tshark (SIGINT, so it closes the pcap properly) and waits for it to exit. */
  stop(): Promise<void>;
}

export interface CaptureOptions {
  iface: string;
  /** A capture (BPF) filter, e.g. `tcp port 15008`. */
  filter: string;
  file: string;
  /** A network namespace to capture in (`ip netns exec`); the current one when absent. */
  ns?: string;
}

const SEGMENT_FIELDS = ['ip.src', 'tcp.srcport', 'ip.dst', 'tcp.dstport', 'tcp.flags.fin', 'tcp.flags.reset'];

/** tshark on `iface`, writing packets that pass `filter` to a pcap and printing each segment; resolves once dumpcap reports "Capturing on". */
export async function startCapture(o: CaptureOptions): Promise<Capture> {
  const tshark = ['tshark', '-n', '-l', '-i', o.iface, '-f', o.filter, '-w', o.file, '-P', '-T', 'fields', ...SEGMENT_FIELDS.flatMap((f) => ['-e', f])];
  const [cmd = 'tshark', ...args] = o.ns === undefined ? tshark : ['ip', 'netns', 'exec', o.ns, ...tshark];
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
    const timer = setTimeout(() => reject(new Error(`tshark did not start capturing on ${o.iface} within 15 s: ${log}`)), 15_000);
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
    file: o.file,
    async seen(predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = segments.find(predicate);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`tshark on ${o.iface} saw no matching segment within ${timeoutMs} ms; saw ${JSON.stringify(segments.slice(-20))}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {
      child.kill('SIGINT');
      await exited;
    },
  };
}

/**
 * Waits until the capture takes packets: dumpcap reports "Capturing on" a moment before its filter is attached, and on a
 * loaded machine a handshake sent in that moment is lost. `probe` makes one short connection the filter matches and
 * returns its local port; it is repeated until the capture has seen a segment of it.
 */
export async function captureArmed(capture: Capture, probe: () => Promise<number>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const port = String(await probe());
    try {
      await capture.seen((s) => s.srcPort === port || s.dstPort === port, 250);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
  }
}

/**
 * Decoded fields of a pcap, one row per packet that matches `display`, each field's values joined by commas. `tlsPorts`
 * are decoded as TLS (Wireshark does not know HBONE's ports), with `keylog` to decrypt.
 */
export async function readCapture(file: string, display: string, fields: string[], o: { tlsPorts: number[]; keylog?: string }): Promise<string[][]> {
  const args = ['-n', '-r', file, ...o.tlsPorts.flatMap((p) => ['-d', `tcp.port==${p},tls`]), ...(o.keylog === undefined ? [] : ['-o', `tls.keylog_file:${o.keylog}`])];
  const out = await runTshark([...args, '-Y', display, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])]);
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
