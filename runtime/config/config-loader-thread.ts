/** Validates a config file in a short-lived worker thread, so the YAML parser and the schema library never occupy the data plane's heap (about 20 MB of RSS). */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { ConfigResult } from './config-problem.js';

const WORKER_FLAG = 'weftConfigFile';

if (!isMainThread && parentPort !== null && typeof (workerData as Record<string, unknown> | null)?.[WORKER_FLAG] === 'string') {
  const { loadConfigFile } = await import('./config-load.js');
  parentPort.postMessage(await loadConfigFile((workerData as Record<string, string>)[WORKER_FLAG] as string));
}

/** Same answer as loadConfigFile; off-thread when running compiled JS, in-process from TypeScript sources (tests, tsx). */
export async function loadConfigOffThread(file: string): Promise<ConfigResult> {
  if (import.meta.url.endsWith('.ts')) return (await import('./config-load.js')).loadConfigFile(file);
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { [WORKER_FLAG]: file } });
    worker.once('message', (result: ConfigResult) => {
      resolve(result);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`config loader thread exited with code ${code}`));
    });
  });
}
