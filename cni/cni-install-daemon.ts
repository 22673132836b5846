/**
 * `weft-cni install --watch`, the DaemonSet's install container (as istio-cni's install-cni): installs, keeps weft-cni
 * chained while the primary CNI rewrites its config, and on SIGTERM takes back what it wrote, unless another installer
 * on the node still runs (a rolling update with maxSurge: 1 starts the new pod before the old one stops).
 */
import { watch, type FSWatcher } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger } from '../runtime/log.js';
import { chainPrimary, installCni, uninstallCni, type InstallOptions } from './cni-install.js';
import { acquireFileLock, tryAcquireFileLock, type FileLock } from './file-lock.js';

const log = createLogger('cni-install');

export interface InstallDaemonOptions {
  install: InstallOptions;
  stateDir: string;
  /** Written once installed, removed when stopping: the container's readiness probe tests for it. */
  readyFile?: string;
  /** How often the conflist is checked besides inotify events (a safety net for missed events). */
  recheckMs: number;
  signal: AbortSignal;
}

/** Every change to the bin/conf dirs and the record happens under this lock, shared with one-shot install/uninstall. */
export function installLockFile(stateDir: string): string {
  return path.join(stateDir, 'install.lock');
}

/** Each running installer holds this shared for its lifetime; whoever can take it exclusively is the last one. */
function liveLockFile(stateDir: string): string {
  return path.join(stateDir, 'install.live');
}

const LOCK_TIMEOUT_MS = 60_000;

export async function runInstallDaemon(opts: InstallDaemonOptions): Promise<void> {
  const { install, stateDir } = opts;
  let live: FileLock | undefined;
  let installed = false;
  const reconcile = async (): Promise<void> => {
    const lock = await acquireFileLock(installLockFile(stateDir), LOCK_TIMEOUT_MS);
    try {
      // Shared and taken under the install lock: an installer that is stopping holds the install lock while it
      // checks for others, so it either sees us or finishes its cleanup before we install.
      live ??= await acquireFileLock(liveLockFile(stateDir), LOCK_TIMEOUT_MS, 'shared');
      const conflist = installed ? chainPrimary(install) : installCni(install);
      if (conflist === undefined) log.info({ confDir: install.confDir }, 'waiting for the primary CNI config');
      else if (!installed) log.info({ conflist, binDir: install.binDir }, 'weft-cni installed');
      installed ||= conflist !== undefined;
    } finally {
      await lock.release();
    }
    if (installed && opts.readyFile !== undefined) await writeFile(opts.readyFile, 'installed\n');
  };

  // One reconcile at a time; events that arrive meanwhile fold into a single follow-up run.
  let running: Promise<void> = Promise.resolve();
  let queued = false;
  const schedule = (): void => {
    if (queued || opts.signal.aborted) return;
    queued = true;
    running = running.then(async () => {
      queued = false;
      if (opts.signal.aborted) return;
      try {
        await reconcile();
      } catch (err) {
        log.error({ error: err }, 'cannot keep weft-cni chained; retrying');
      }
    });
  };

  // Watching starts first, so a rewrite that lands while the first install runs is not missed.
  const watcher: FSWatcher = watch(install.confDir, schedule);
  const timer = setInterval(schedule, opts.recheckMs);
  try {
    await reconcile();
    await new Promise<void>((resolve) => {
      if (opts.signal.aborted) resolve();
      else opts.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    clearInterval(timer);
    watcher.close();
    await running;
    if (opts.readyFile !== undefined) await rm(opts.readyFile, { force: true });
    await stop(opts, live);
  }
}

async function stop(opts: InstallDaemonOptions, live: FileLock | undefined): Promise<void> {
  const lock = await acquireFileLock(installLockFile(opts.stateDir), LOCK_TIMEOUT_MS);
  try {
    await live?.release();
    const last = await tryAcquireFileLock(liveLockFile(opts.stateDir));
    if (last === undefined) {
      log.info({}, 'another weft-cni installer runs on this node (rolling update): leaving the install to it');
      return;
    }
    try {
      uninstallCni(opts.install.binDir, opts.install.confDir, opts.install.recordFile);
      log.info({ binDir: opts.install.binDir, confDir: opts.install.confDir }, 'weft-cni uninstalled');
    } finally {
      await last.release();
    }
  } finally {
    await lock.release();
  }
}
