/** A flock(2) on a lock file (exclusive, or shared among readers), held by a `flock` child for as long as we live: it is released on release() and, because the child's stdin closes with us, on any crash too. */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { WeftError } from '../runtime/errors.js';

export interface FileLock {
  release(): Promise<void>;
}

/** The fixed script prints once the lock is held, then waits for stdin to close; no outside input reaches the shell. */
const HOLD_SCRIPT = 'echo held; exec cat >/dev/null';

export type LockMode = 'exclusive' | 'shared';

export async function acquireFileLock(file: string, timeoutMs: number, mode: LockMode = 'exclusive'): Promise<FileLock> {
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const lock = await holdLock(file, mode, ['--timeout', String(seconds)]);
  if (lock === undefined) throw new WeftError('WEFT_ERR_CNI', `timed out after ${seconds}s waiting for the lock ${file} (another weft-cni is running)`);
  return lock;
}

/** The lock if nobody holds a conflicting one right now, else undefined (flock --nonblock). */
export function tryAcquireFileLock(file: string, mode: LockMode = 'exclusive'): Promise<FileLock | undefined> {
  return holdLock(file, mode, ['--nonblock']);
}

async function holdLock(file: string, mode: LockMode, wait: string[]): Promise<FileLock | undefined> {
  mkdirSync(path.dirname(file), { recursive: true });
  const child = spawn('flock', [`--${mode}`, ...wait, file, 'sh', '-c', HOLD_SCRIPT], {
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
  if (!held) return undefined;
  return {
    async release() {
      child.stdin.end();
      await exited;
    },
  };
}
