// Test endpoints run inside pod namespaces as small Node processes: a TCP server that greets with the peer address it sees and echoes,
// a UDP server that answers with the sender's address, and one-shot clients for both.
import { spawn, type ChildProcess } from 'node:child_process';
import { nsRun } from './netns-exec.js';

const TCP_SERVER = `
const net = require('node:net');
net.createServer((s) => { s.write('from ' + s.remoteAddress + '\\n'); s.pipe(s); s.on('error', () => {}); })
  .listen(Number(process.argv[1]), '0.0.0.0', () => process.stdout.write('ready\\n'));`;

const UDP_SERVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => s.send('from ' + r.address + ' ' + m, r.port, r.address));
s.bind(Number(process.argv[1]), '0.0.0.0', () => process.stdout.write('ready\\n'));`;

/** Connects, sends a line, prints everything received until the server has echoed it; exit 1 on error or after 5 s. */
const TCP_CLIENT = `
const net = require('node:net');
const [host, port, msg] = process.argv.slice(1);
let out = '';
const s = net.connect(Number(port), host, () => s.write(msg + '\\n'));
s.setEncoding('utf8');
s.on('data', (d) => { out += d; if (out.includes(msg + '\\n')) { process.stdout.write(out); s.end(); } });
s.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
setTimeout(() => { process.stderr.write('timeout: ' + out); process.exit(1); }, 5000).unref();`;

const UDP_CLIENT = `
const dgram = require('node:dgram');
const [host, port, msg] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.on('message', (m) => { process.stdout.write(String(m)); process.exit(0); });
s.send(msg, Number(port), host);
setTimeout(() => { process.stderr.write('timeout'); process.exit(1); }, 3000).unref();`;

export interface PeerServer {
  stop(): void;
}

export async function startServer(ns: string, kind: 'tcp' | 'udp', port: number): Promise<PeerServer> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', kind === 'tcp' ? TCP_SERVER : UDP_SERVER, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForLine(child, 'ready', 10_000);
  return { stop: () => child.kill('SIGKILL') };
}

export async function waitForLine(child: ChildProcess, text: string, timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" within ${timeoutMs} ms: ${buf}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before "${text}": ${buf}`));
    });
  });
}

/** Returns the address the server saw ("from X" line); throws if the exchange failed. */
export async function tcpExchange(ns: string, host: string, port: number, msg = 'ping'): Promise<string> {
  const r = await nsRun(ns, process.execPath, ['-e', TCP_CLIENT, host, String(port), msg], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`tcp ${host}:${port} from ${ns} failed: ${r.stderr}`);
  const from = /^from (\S+)\n/.exec(r.stdout);
  if (from === null || !r.stdout.includes(`${msg}\n`)) throw new Error(`unexpected reply: ${r.stdout}`);
  return from[1]!;
}

export async function udpExchange(ns: string, host: string, port: number, msg = 'ping'): Promise<string> {
  const r = await nsRun(ns, process.execPath, ['-e', UDP_CLIENT, host, String(port), msg], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`udp ${host}:${port} from ${ns} failed: ${r.stderr}`);
  const m = /^from (\S+) (.*)$/.exec(r.stdout);
  if (m === null || m[2] !== msg) throw new Error(`unexpected reply: ${r.stdout}`);
  return m[1]!;
}
