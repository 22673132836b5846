// Starts the node runtime inside a simulated node's runtime namespace and collects its JSON access-log lines from stderr.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SimulatedNode } from './netns-topology.js';
import { waitForLine } from './netns-peers.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type AccessLine = Record<string, unknown>;

export interface RuntimeOptions {
  /** Service VIPs: "vip:port" -> "podIp:port". */
  services?: Record<string, string>;
  preserveSource?: boolean;
}

export interface RuntimeHandle {
  lines(): AccessLine[];
  waitFor(predicate: (line: AccessLine) => boolean, timeoutMs?: number): Promise<AccessLine>;
  stop(): Promise<void>;
}

export async function startRuntime(node: SimulatedNode, opts: RuntimeOptions = {}): Promise<RuntimeHandle> {
  const script = path.join(repoRoot, 'test/helpers/netns-tproxy-forwarder.ts');
  const child = spawn('ip', ['netns', 'exec', node.runtimeNs, process.execPath, '--import', 'tsx', script, JSON.stringify(opts)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: AccessLine[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as AccessLine);
      } catch {
        process.stderr.write(`[runtime ${node.runtimeNs}] ${line}\n`);
      }
    }
    for (const w of waiters) w();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForLine(child, 'ready', 20_000);
  return {
    lines: () => [...lines],
    async waitFor(predicate, timeoutMs = 5000) {
      const found = (): AccessLine | undefined => lines.find(predicate);
      const now = found();
      if (now !== undefined) return now;
      return new Promise<AccessLine>((resolve, reject) => {
        const check = (): void => {
          const line = found();
          if (line === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(line);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching access-log line within ${timeoutMs} ms; got ${JSON.stringify(lines)}`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
