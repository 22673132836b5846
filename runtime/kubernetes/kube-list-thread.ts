/**
 * The rest of a big list read, parsed and stripped in a short-lived worker thread: at cluster scale (150,000 pods, ~330 MB
 * of JSON) parsing is most of the start-up cost, and off the main thread it runs beside the model's own work on the
 * other core. Only the stripped objects come back; the thread ends with its list.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { KubeClient } from './kube-client.js';
import type { KubeConnection } from './kube-config.js';
import { listPages, type ListPage } from './kube-list-pager.js';
import { STRIP_BY_RESOURCE } from './kube-objects.js';
import { PROTO_BY_RESOURCE } from './kube-protobuf-objects.js';
import type { Stripped } from './kube-reflector.js';
import { KubeStatusError } from './kube-status-error.js';
import { setPooling } from '../state/string-pool.js';

const WORKER_FLAG = 'weftKubeList';

export interface OffThreadList {
  /** The thread opens its own connection with these credentials (a token file is read there too). */
  connection: KubeConnection;
  path: string;
  /** Which STRIP_BY_RESOURCE (and PROTO_BY_RESOURCE) entry cuts the items. */
  resource: string;
  /** Ask for the resource's protobuf form (JSON answers still work). */
  protobuf: boolean;
  pageSize: number;
  labelSelector: string | undefined;
  continue: string;
}

type FromThread =
  | { t: 'status'; statusCode: number }
  | { t: 'page'; page: ListPage<Stripped> }
  | { t: 'done' }
  | { t: 'error'; kind: 'status'; code: number; reason: string; message: string; retryAfterMs: number | undefined }
  | { t: 'error'; kind: 'syntax' | 'other'; message: string };

async function runInThread(job: OffThreadList, post: (m: FromThread) => void): Promise<void> {
  const strip = STRIP_BY_RESOURCE[job.resource];
  const client = new KubeClient(job.connection);
  try {
    if (strip === undefined) throw new Error(`no strip function for ${job.resource}`);
    const signal = new AbortController().signal;
    const proto = job.protobuf ? PROTO_BY_RESOURCE[job.resource] : undefined;
    for await (const page of listPages(client, { path: job.path, pageSize: job.pageSize, labelSelector: job.labelSelector, continue: job.continue, signal, strip, proto, onStatus: (statusCode) => post({ t: 'status', statusCode }) })) {
      post({ t: 'page', page });
    }
    post({ t: 'done' });
  } catch (err) {
    if (err instanceof KubeStatusError) post({ t: 'error', kind: 'status', code: err.code, reason: err.reason, message: err.message, retryAfterMs: err.retryAfterMs });
    else post({ t: 'error', kind: err instanceof SyntaxError ? 'syntax' : 'other', message: (err as Error).message });
  } finally {
    await client.close();
  }
}

if (!isMainThread && parentPort !== null && (workerData as Record<string, unknown> | null)?.[WORKER_FLAG] !== undefined) {
  const port = parentPort;
  // Strings are copied on their way to the main thread, which pools them there (adoptStripped).
  setPooling(false);
  await runInThread((workerData as Record<string, OffThreadList>)[WORKER_FLAG] as OffThreadList, (m) => port.postMessage(m));
}

function rebuild(m: Extract<FromThread, { t: 'error' }>): Error {
  if (m.kind === 'status') return new KubeStatusError(m.code, m.reason, m.message, m.retryAfterMs);
  return m.kind === 'syntax' ? new SyntaxError(m.message) : new Error(m.message);
}

/**
 * The pages from `job.continue` on, listed in a worker thread, their items already stripped. Errors arrive as the
 * main thread's own kinds (KubeStatusError, SyntaxError, Error), so the reflector classifies them the same way.
 */
export async function* listOffThread(job: OffThreadList, signal: AbortSignal, onStatus: (statusCode: number) => void): AsyncGenerator<ListPage<Stripped>> {
  const data = { [WORKER_FLAG]: job };
  const worker = import.meta.url.endsWith('.ts')
    ? new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`, { eval: true, workerData: data })
    : new Worker(new URL(import.meta.url), { workerData: data });
  const queue: FromThread[] = [];
  let wake: (() => void) | undefined;
  const push = (m: FromThread): void => {
    queue.push(m);
    wake?.();
  };
  worker.on('message', push);
  worker.on('error', (err: Error) => push({ t: 'error', kind: 'other', message: `list thread failed: ${err.message}` }));
  worker.on('exit', (code) => push({ t: 'error', kind: 'other', message: `list thread exited with code ${code} before the list ended` }));
  const onAbort = (): void => push({ t: 'error', kind: 'other', message: 'aborted' });
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const m = queue.shift();
      if (m === undefined) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (m.t === 'status') onStatus(m.statusCode);
      else if (m.t === 'page') yield m.page;
      else if (m.t === 'done') return;
      else throw signal.aborted ? signal.reason : rebuild(m);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}
