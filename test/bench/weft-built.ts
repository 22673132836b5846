// Starts the built weft (dist/runtime/cli.js) as a process for benchmarks and waits until it serves; `--takeover` runs wait until the predecessor let go.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './bench-tools.js';

export interface BuiltWeft {
  child: ChildProcess;
  ports: { dns: number; localPort: number };
  exited: Promise<void>;
  kill(): void;
}

export async function spawnWeftBuilt(configFile: string, args: string[], env: NodeJS.ProcessEnv): Promise<BuiltWeft> {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/runtime/cli.js'), 'run', '--config', configFile, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const takeover = args.includes('--takeover');
  const ports = await new Promise<BuiltWeft['ports']>((resolve, reject) => {
    let log = '';
    let found: BuiltWeft['ports'] | undefined;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      log += d;
      for (const line of log.split('\n')) {
        if (!line.startsWith('{')) continue;
        const entry = JSON.parse(line) as { msg?: string; ports?: { dns: number; localPorts: Record<string, number> } };
        if (entry.msg === 'weft started' && entry.ports !== undefined) found = { dns: entry.ports.dns, localPort: Object.values(entry.ports.localPorts)[0] ?? 0 };
        const done = takeover ? entry.msg === 'predecessor stopped accepting; it drains its open connections' : entry.msg === 'weft started';
        if (done && found !== undefined) return resolve(found);
      }
    });
    void exited.then(() => reject(new Error(`weft exited before serving: ${log.slice(-500)}`)));
  });
  return { child, ports, exited, kill: () => child.kill('SIGKILL') };
}
