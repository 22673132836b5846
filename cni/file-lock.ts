/** An exclusive flock(2) on a lock file, held by a `flock` child for as long as we live: it is released on release() and, because the child's stdin closes with us, on any crash too. */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { WeftError } from '../runtime/errors.js';

export interface FileLock {
  release(): Promise<void>;
}

/** The fixed script prints once the lock is held, then waits for stdin to close; no outside input reaches the shell. */
const HOLD_SCRIPT = 'echo held; exec cat >/dev/null';

export async function acquireFileLock(file: string, timeoutMs: number): Promise<FileLock> {
  mkdirSync(path.dirname(file), { recursive: true });
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const child = spawn('flock', ['--exclusive', '--timeout', String(seconds), file, 'sh', '-c', HOLD_SCRIPT], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const held = await new Promise<boolean>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('held')) resolve(true);
    });
    child.once('error', (err) => reject(new WeftError('WEFT_ERR_CNI', `cannot run flock for ${file}: ${err.message}`, { cause: err })));
    child.once('exit', () => resolve(false));
  });
  if (!held) throw new WeftError('WEFT_ERR_CNI', `timed out after ${seconds}s waiting for the lock ${file} (another weft-cni is running)`);
  return {
    async release() {
      child.stdin.end();
      await exited;
    },
  };
}
