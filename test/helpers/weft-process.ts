// Runs `weft run --config FILE [--takeover]` as a real process (the sources through tsx, or dist/ when built) and follows its JSON log lines.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineWaiters } from './line-waiters.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface WeftProcess {
  child: ChildProcess;
  pid: number;
  logs: Record<string, unknown>[];
  /** Resolves with the first log line (past or future) matching `pred`. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or the signal name) once the process ended. */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnWeftOptions {
  takeover?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Extra `node` flags (an --import hook that makes the process crash, for instance). */
  nodeArgs?: string[];
}

export function spawnWeft(configFile: string, opts: SpawnWeftOptions = {}): WeftProcess {
  const args = [...(opts.nodeArgs ?? []), '--import', 'tsx', path.join(repoRoot, 'runtime/cli.ts'), 'run', '--config', configFile, ...(opts.takeover === true ? ['--takeover'] : [])];
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } });
  const logs: Record<string, unknown>[] = [];
  const waiters = new LineWaiters(logs);
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        continue;
      }
    }
    waiters.notify();
  });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  return {
    child,
    pid: child.pid ?? 0,
    logs,
    exited,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitForLog: (pred, timeoutMs = 30_000) =>
      waiters.waitFor(
        pred,
        timeoutMs,
        () => `weft ${child.pid}: no matching log line within ${timeoutMs} ms; last lines: ${JSON.stringify(logs.slice(-5))}`,
        // A line may still be on its way from the pipe when the exit is reported.
        exited.then(() => new Promise<string>((r) => setTimeout(() => r(`weft ${child.pid} exited before the awaited log line; last lines: ${JSON.stringify(logs.slice(-5))}`), 50))),
      ),
  };
}

export const logMsg = (msg: string) => (line: Record<string, unknown>): boolean => line.msg === msg;
