// Shared pieces of the side-by-side benchmarks: free ports, peer processes pinned to a core, config templates, wrk and iperf3 runs, RSS.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The repository root, found from this file whether it runs from test/bench or dist/test/bench. */
function findRepoRoot(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); dir !== '/'; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'weft') return dir;
  }
  throw new Error('cannot find the weft repository root');
}
export const REPO_ROOT = findRepoRoot();
export const CONFIG_DIR = path.join(REPO_ROOT, 'test/bench/configs');

/** The proxy under test gets core 1; wrk and the origin share core 0 — the same split for every peer. */
export const PROXY_CPU = '1';
export const LOAD_CPU = '0';

export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Peer {
  name: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `command` pinned to `cpu` with the fd limit raised to the hard limit, and waits until it is ready:
 * by default until `port` accepts; with `readyLine`, until its stdout prints a matching line (servers such as
 * iperf3 that would take a probe connection for a client).
 */
export async function startPeer(name: string, port: number, command: string[], cpu = PROXY_CPU, env: NodeJS.ProcessEnv = process.env, readyLine?: RegExp | (() => Promise<void>)): Promise<Peer> {
  const quoted = command.map((c) => `'${c.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('bash', ['-c', `ulimit -n $(ulimit -Hn); exec taskset -c ${cpu} ${quoted}`], { stdio: ['ignore', readyLine instanceof RegExp ? 'pipe' : 'ignore', 'pipe'], env });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready =
    readyLine === undefined
      ? waitForPort(port)
      : typeof readyLine === 'function'
        ? readyLine()
        : new Promise<void>((resolve) => {
          let out = '';
          child.stdout?.on('data', (d: Buffer) => {
            out += d.toString();
            if (readyLine.test(out)) resolve();
          });
        });
  try {
    await Promise.race([ready, exited.then(() => Promise.reject(new Error(`${name} exited: ${stderr}`)))]);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    name,
    port,
    process: child,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs `fn` against a started peer and always stops it. */
export async function withPeer<T>(peer: Promise<Peer>, fn: (p: Peer) => Promise<T>): Promise<T> {
  const p = await peer;
  try {
    return await fn(p);
  } finally {
    await p.stop();
  }
}

export async function renderTemplate(template: string, dir: string, values: Record<string, string | number>): Promise<string> {
  let text = await readFile(path.join(CONFIG_DIR, template), 'utf8');
  for (const [k, v] of Object.entries({ DIR: dir, ...values })) text = text.replaceAll(`{{${k}}}`, String(v));
  const out = path.join(dir, template);
  await writeFile(out, text);
  return out;
}

export interface WrkResult {
  rps: number;
  requests: number;
  /** Proxy CPU time per request (µs), when the caller measured the proxy process. */
  cpuUsPerReq?: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  /** wrk's own user + system CPU seconds, when the load asked for them (`cpuTimes`). */
  wrkCpuSeconds?: number;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

/** Polls an HTTP readiness endpoint (weft's /healthz/ready) until it answers 200. */
export async function waitForReady(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz/ready`).then((r) => r.status === 200, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`readiness on port ${port} not 200 after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Where wrk runs and with how many threads: by default one thread on the load core (the one-core sections). */
export interface WrkLoad {
  cpus: string;
  threads: number;
  /** Also measure wrk's own CPU time (the two-core section counts every process on the shared cores). */
  cpuTimes?: boolean;
}

/** bash's `times` line for its children (`0m1.234s 0m0.567s`): their user + system seconds. */
function childSeconds(timesLine: string): number {
  return [...timesLine.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
}

/** wrk -t1 -c32 (keep-alive, tiny responses), pinned to the load core; `load` changes both (the two-core section). */
export async function runWrk(url: string, seconds: number, connections = 32, extra: string[] = [], load: WrkLoad = { cpus: LOAD_CPU, threads: 1 }): Promise<WrkResult> {
  const args = ['-c', load.cpus, 'wrk', `-t${load.threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', ...extra, url];
  // bash's `times` prints its children's CPU after wrk exits: the one place wrk's user and system time can be read.
  const { stdout } = load.cpuTimes === true
    ? await run('bash', ['-c', 'taskset "$@"; times', 'wrk', ...args], { maxBuffer: 1 << 20 })
    : await run('taskset', args, { maxBuffer: 1 << 20 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  const p50 = /\s50%\s+([\d.]+)(us|ms|s)/.exec(stdout);
  const p99 = /\s99%\s+([\d.]+)(us|ms|s)/.exec(stdout);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  return {
    rps,
    requests,
    p50ms: p50 === null ? NaN : toMs(p50[1] as string, p50[2] as string),
    p99ms: p99 === null ? NaN : toMs(p99[1] as string, p99[2] as string),
    errors: non2xx + (errs === null ? 0 : errs.slice(1).reduce((a, b) => a + Number(b), 0)),
    wrkCpuSeconds: load.cpuTimes === true ? childSeconds(stdout.trimEnd().split('\n').at(-1) ?? '') : undefined,
  };
}

/** One iperf3 stream for `seconds`, returning Gbit/s received. */
/**
 * The best round of each scenario over interleaved rounds: `keep(name)` copies every `${name}_*` number of `out` (the
 * round just measured) when its req/s beats the best so far; `best()` is the union of the kept numbers.
 */
export function bestOfRounds(out: Record<string, number>): { keep: (name: string) => void; best: () => Record<string, number> } {
  const kept: Record<string, Record<string, number>> = {};
  return {
    keep: (name) => {
      const rps = out[`${name}_rps`] ?? 0;
      if ((kept[name]?.[`${name}_rps`] ?? -1) >= rps) return;
      kept[name] = Object.fromEntries(Object.entries(out).filter(([k]) => k.startsWith(`${name}_`)));
    },
    best: () => Object.assign({}, ...Object.values(kept)) as Record<string, number>,
  };
}

export async function runIperf(port: number, seconds: number): Promise<number> {
  const { stdout } = await run('taskset', ['-c', LOAD_CPU, 'iperf3', '-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J'], { maxBuffer: 8 << 20 });
  const parsed = JSON.parse(stdout) as { end?: { sum_received?: { bits_per_second?: number } } };
  return (parsed.end?.sum_received?.bits_per_second ?? 0) / 1e9;
}

/** CPU seconds (user + system) used so far by `pid` and its children (nginx's work happens in its worker). */
export async function cpuSecondsOfTree(pid: number): Promise<number> {
  const { readdir } = await import('node:fs/promises');
  const ticks = Number(process.env.WEFT_CLK_TCK ?? 100);
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // Fields after the parenthesised command: state ppid ... utime(14) stime(15), counted from field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const self = Number(entry);
    const ppid = Number(fields[1]);
    if (self === pid || ppid === pid) total += (Number(fields[11]) + Number(fields[12])) / ticks;
  }
  return total;
}

export async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

export async function hasCommand(command: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${command}`]);
    return true;
  } catch {
    return false;
  }
}
