/**
 * A paged LIST (limit/continue) read ahead: the API server writes a list's `metadata` (resourceVersion, continue,
 * remainingItemCount) before `items`, in JSON as in protobuf, so the next page is requested as soon as the current page's
 * first bytes are in and the server produces it while this one is still arriving and being decoded. Items come out cut
 * to what weft keeps. Used on the main thread and in the list thread.
 */
import { isAscii } from 'node:buffer';
import type { KubeClient, KubeResponse } from './kube-client.js';
import type { RawObject, Stripped } from './kube-reflector.js';
import { KubeStatusError } from './kube-status-error.js';
import { PROTOBUF_ACCEPT, decodeList, isProtobuf, listHead } from './kube-protobuf.js';
import type { ProtoCodec } from './kube-protobuf-objects.js';

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

export interface ListPagesOptions<T extends Stripped> {
  path: string;
  /** Cuts a JSON item to what weft keeps. */
  strip: (raw: RawObject) => T;
  /** The resource's protobuf form (built-in types): asked for first, with JSON accepted (a server may answer either). */
  proto: ProtoCodec | undefined;
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
export async function* listPages<T extends Stripped>(client: KubeClient, opts: ListPagesOptions<T>): AsyncGenerator<ListPage<T>> {
  const accept = opts.proto === undefined ? undefined : PROTOBUF_ACCEPT;
  const fetch = (cont: string | undefined): Promise<KubeResponse> =>
    client.request(opts.path, { query: { limit: opts.pageSize, continue: cont, labelSelector: opts.labelSelector }, signal: opts.signal, ...(accept === undefined ? {} : { accept }) });
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
      const protobuf = opts.proto !== undefined && isProtobuf(res.headers);
      const body = await readBody(res, protobuf, (head) => {
        if (head.continue === undefined) return;
        if (opts.handOff?.(head) === true) handedOff = true;
        else next = fetch((prefetched = head.continue));
      });
      // A SyntaxError (ProtobufDecodeError is one) counts as a decode error and the list starts over.
      const page = protobuf && opts.proto !== undefined ? (decodeList(body, opts.proto, `list ${opts.path}`) as ListPage<T>) : jsonPage(body, opts.strip);
      if (!handedOff && prefetched !== page.continue) {
        // The token read ahead was not the page's (it cannot be, short of a broken server): ask again with the right one.
        discardResponse(next);
        next = page.continue === undefined ? undefined : fetch(page.continue);
      }
      if (handedOff) next = undefined;
      yield page;
      if (handedOff) return;
    }
  } finally {
    // A page fetched ahead of a failure (or of the caller stopping) is drained so its connection is reused, never leaked.
    discardResponse(next);
  }
}

function jsonPage<T extends Stripped>(body: Buffer, strip: (raw: RawObject) => T): ListPage<T> {
  // Lists are ASCII but for the odd label or annotation: an ASCII body becomes a one-byte string without UTF-8 decoding.
  const text = isAscii(body) ? body.toString('latin1') : body.toString('utf8');
  const page = JSON.parse(text) as { metadata?: { resourceVersion?: string; continue?: string; remainingItemCount?: number }; items?: RawObject[] };
  const cont = page.metadata?.continue === '' ? undefined : page.metadata?.continue;
  return { items: (page.items ?? []).map(strip), resourceVersion: page.metadata?.resourceVersion, continue: cont, remainingItemCount: page.metadata?.remainingItemCount };
}

/** How far into a body its list metadata is looked for before giving up on reading ahead. */
const HEAD_BYTES = 4096;

/** The body, calling `onHead` once the list's metadata is in (or HEAD_BYTES passed without it). */
async function readBody(res: KubeResponse, protobuf: boolean, onHead: (head: ListHead) => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  let looking = true;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (!looking) continue;
    const prefix = chunks.length === 1 ? chunk : Buffer.concat(chunks, Math.min(size, HEAD_BYTES));
    const head = protobuf ? listHead(prefix) : jsonHead(prefix);
    if (head === undefined && size < HEAD_BYTES) continue;
    looking = false;
    onHead(head ?? { continue: undefined, remainingItemCount: undefined });
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

/** A JSON list's `continue` and `remainingItemCount`, written before `"items"`; undefined until `"items"` is in. */
function jsonHead(prefix: Buffer): ListHead | undefined {
  const head = prefix.toString('latin1', 0, Math.min(prefix.length, HEAD_BYTES));
  const items = head.indexOf('"items"');
  if (items < 0) return undefined;
  const meta = head.slice(0, items);
  const token = /"continue":"([^"\\]+)"/.exec(meta)?.[1];
  const remaining = /"remainingItemCount":(\d+)/.exec(meta)?.[1];
  return { continue: token, remainingItemCount: remaining === undefined ? undefined : Number(remaining) };
}
