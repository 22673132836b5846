/**
 * A paged LIST (limit/continue) read ahead: the API server writes a list's `metadata` (resourceVersion, continue,
 * remainingItemCount) before `items`, so the next page is requested as soon as the current page's first bytes are in and
 * the server produces it while this one is still arriving and being parsed. Used on the main thread and in the list thread.
 */
import { isAscii } from 'node:buffer';
import type { KubeClient, KubeResponse } from './kube-client.js';
import type { RawObject } from './kube-reflector.js';
import { KubeStatusError } from './kube-status-error.js';

/** What the list's `metadata` says before its items arrive. */
export interface ListHead {
  continue: string | undefined;
  remainingItemCount: number | undefined;
}

export interface ListPage<T = RawObject> {
  items: T[];
  resourceVersion: string | undefined;
  /** The token of the next page; undefined on the last one. */
  continue: string | undefined;
  remainingItemCount: number | undefined;
}

export interface ListPagesOptions {
  path: string;
  pageSize: number;
  labelSelector: string | undefined;
  /** Start from this token (the rest of a list begun elsewhere). */
  continue?: string;
  signal: AbortSignal;
  /** Each answer's status, before its body is read (request metrics). */
  onStatus?: (statusCode: number) => void;
  /** Asked with each page's head: true stops after this page (no read-ahead) and leaves the rest to the caller. */
  handOff?: (head: ListHead) => boolean;
}

/** Drains a response nobody will read, so its connection goes back to the pool. */
export function discardResponse(res: Promise<KubeResponse> | undefined): void {
  void res?.then((r) => r.body.dump(), () => undefined);
}

/** The pages of one list, in order; a non-200 answer throws its KubeStatusError (410 for an expired `continue`). */
export async function* listPages(client: KubeClient, opts: ListPagesOptions): AsyncGenerator<ListPage> {
  const fetch = (cont: string | undefined): Promise<KubeResponse> => client.request(opts.path, { query: { limit: opts.pageSize, continue: cont, labelSelector: opts.labelSelector }, signal: opts.signal });
  // The page requested next (ahead of time once the current page's `continue` is known).
  let next: Promise<KubeResponse> | undefined = fetch(opts.continue);
  try {
    while (next !== undefined) {
      const res: KubeResponse = await next;
      next = undefined;
      opts.onStatus?.(res.statusCode);
      if (res.statusCode !== 200) throw await KubeStatusError.fromResponse(res, `list ${opts.path}`);
      let handedOff = false;
      let prefetched: string | undefined;
      const text = await readBody(res, (head) => {
        if (head.continue === undefined) return;
        if (opts.handOff?.(head) === true) handedOff = true;
        else next = fetch((prefetched = head.continue));
      });
      // A SyntaxError here counts as a decode error and the list starts over.
      const page = JSON.parse(text) as { metadata?: { resourceVersion?: string; continue?: string; remainingItemCount?: number }; items?: RawObject[] };
      const cont = page.metadata?.continue === '' ? undefined : page.metadata?.continue;
      if (!handedOff && prefetched !== cont) {
        // The token read ahead was not the page's (it cannot be, short of a broken server): ask again with the right one.
        discardResponse(next);
        next = cont === undefined ? undefined : fetch(cont);
      }
      if (handedOff) next = undefined;
      yield { items: page.items ?? [], resourceVersion: page.metadata?.resourceVersion, continue: cont, remainingItemCount: page.metadata?.remainingItemCount };
      if (handedOff) return;
    }
  } finally {
    // A page fetched ahead of a failure (or of the caller stopping) is drained so its connection is reused, never leaked.
    discardResponse(next);
  }
}

/** The body as a string, calling `onHead` once the part before `"items"` is in (or 4 KiB passed without it). */
async function readBody(res: KubeResponse, onHead: (head: ListHead) => void): Promise<string> {
  const chunks: Buffer[] = [];
  let head = '';
  let looking = true;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    if (!looking) continue;
    head += chunk.toString('latin1', 0, Math.min(chunk.length, 4096 - head.length));
    const items = head.indexOf('"items"');
    if (items < 0 && head.length < 4096) continue;
    looking = false;
    const meta = items < 0 ? '' : head.slice(0, items);
    const token = /"continue":"([^"\\]+)"/.exec(meta)?.[1];
    const remaining = /"remainingItemCount":(\d+)/.exec(meta)?.[1];
    onHead({ continue: token, remainingItemCount: remaining === undefined ? undefined : Number(remaining) });
  }
  const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  // Lists are ASCII but for the odd label or annotation: an ASCII body becomes a one-byte string without UTF-8 decoding.
  return isAscii(body) ? body.toString('latin1') : body.toString('utf8');
}
