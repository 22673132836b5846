/** Bidirectional byte copy between a client and an upstream socket: backpressure both ways, half-close, idle timeout, byte counts from the sockets themselves. */
import type net from 'node:net';
import { getSystemErrorName } from 'node:util';
import { canCopyOnHandles, copyOnHandles, type HandleCopy } from './handle-copy.js';
import { canCopyNatively, copyNatively } from './native-copy.js';
import { endAndDrop, forwardStream } from './stream-forward.js';
import { DRAIN_CLOSE_GRACE_MS } from '../drain.js';

export const CLOSE_REASONS = ['complete', 'idle_timeout', 'client_reset', 'upstream_reset', 'drained', 'policy'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

export interface CopyResult {
  /** Bytes from the client delivered to the upstream (Istio's "received"). */
  bytesReceived: number;
  /** Bytes from the upstream delivered to the client (Istio's "sent"). */
  bytesSent: number;
  reason: CloseReason;
  error?: Error;
}

export interface CopyOptions {
  idleTimeoutMs: number;
  /**
   * Ends the copy when aborted: reason `policy` destroys both sides; any other (the drain deadline) ends it in order,
   * FIN both ways and late bytes dropped until each peer ends, and destroys only what has not ended after
   * DRAIN_CLOSE_GRACE_MS.
   */
  signal?: AbortSignal;
  /**
   * `auto` takes the fastest path the sockets allow (native pump, then libuv handles, then streams); `handles` and
   * `streams` force the slower ones (tests run every path through one contract suite).
   */
  path?: 'auto' | 'handles' | 'streams';
}

/**
 * Copies until both directions finished or either side failed. Both sockets must be created with
 * allowHalfOpen so one side's FIN does not close the other direction (a client may send its request,
 * shut down its write side, and still read the whole response).
 */
export function copyBidirectional(client: net.Socket, upstream: net.Socket, opts: CopyOptions): Promise<CopyResult> {
  const path = opts.path ?? 'auto';
  // Bytes written before the copy (a CONNECT reply, an absolute-form request head) count like the copied ones.
  const before = { received: upstream.bytesWritten, sent: upstream.bytesRead };
  // The pump may refuse at the last moment (no descriptor left for the dup); the sockets are untouched then.
  // An HBONE tunnel on a native connection takes the client socket into the addon (runtime/hbone/native-tls-socket.ts).
  const tunnel = path === 'auto' ? (upstream as net.Socket & { nativeCopy?: (socket: net.Socket) => HandleCopy | undefined }).nativeCopy?.(client) : undefined;
  if (tunnel !== undefined) return copyFast(tunnel, before, opts);
  const native = path === 'auto' && canCopyNatively(client, upstream) ? copyNatively(client, upstream) : undefined;
  if (native !== undefined) return copyFast(native, before, opts);
  // Bytes Node already buffered in a Readable must go first, which only the stream path preserves.
  if (path !== 'streams' && client.readableLength === 0 && upstream.readableLength === 0 && canCopyOnHandles(client, upstream)) return copyFast(copyOnHandles(client, upstream), before, opts);
  return copyStreams(client, upstream, opts);
}

/** A running fast path (native-copy.ts or handle-copy.ts) under the same contract: idle timeout, abort signal, byte counts, close reason. */
async function copyFast(copy: HandleCopy, before: { received: number; sent: number }, opts: CopyOptions): Promise<CopyResult> {
  let reason: CloseReason = 'complete';
  let timer: NodeJS.Timeout | undefined;
  let grace: NodeJS.Timeout | undefined;
  const onAbort = (): void => {
    reason = opts.signal?.reason === 'policy' ? 'policy' : 'drained';
    if (reason === 'policy') return copy.abort();
    copy.drain();
    grace = setTimeout(() => copy.abort(), DRAIN_CLOSE_GRACE_MS);
    return undefined;
  };
  if (opts.idleTimeoutMs > 0) {
    // One timer per connection, re-armed for the remaining time rather than reset on every chunk.
    const check = (): void => {
      const idle = copy.idleFor(Date.now());
      if (idle >= opts.idleTimeoutMs) {
        reason = 'idle_timeout';
        copy.abort();
      } else timer = setTimeout(check, opts.idleTimeoutMs - idle);
    };
    timer = setTimeout(check, opts.idleTimeoutMs);
  }
  if (opts.signal?.aborted === true) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const end = await copy.done;
    const result: CopyResult = { bytesReceived: before.received + end.aToB, bytesSent: before.sent + end.bToA, reason };
    if (end.error !== undefined && reason === 'complete') {
      const name = getSystemErrorName(end.error.code);
      result.reason = end.error.side === 'a' ? 'client_reset' : 'upstream_reset';
      result.error = Object.assign(new Error(`${end.error.side === 'a' ? 'read' : 'write'} ${name}`), { code: name });
    }
    return result;
  } finally {
    clearTimeout(timer);
    clearTimeout(grace);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** The portable path on Node streams: used for sockets without a libuv handle or with bytes already queued. */
function copyStreams(client: net.Socket, upstream: net.Socket, opts: CopyOptions): Promise<CopyResult> {
  return new Promise((resolve) => {
    let reason: CloseReason = 'complete';
    let error: Error | undefined;
    let closed = 0;
    const fail = (why: CloseReason, err?: Error): void => {
      if (reason === 'complete') {
        reason = why;
        error = err;
      }
      client.destroy();
      upstream.destroy();
    };
    let grace: NodeJS.Timeout | undefined;
    const onClose = (): void => {
      if (++closed < 2) return;
      clearTimeout(grace);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ bytesReceived: upstream.bytesWritten, bytesSent: upstream.bytesRead, reason, ...(error === undefined ? {} : { error }) });
    };
    const onAbort = (): void => {
      if (opts.signal?.reason === 'policy') return fail('policy');
      if (reason === 'complete') reason = 'drained';
      // The drain deadline: FIN both ways; what either peer still sends is dropped (read, so the close is no reset).
      endAndDrop(client);
      endAndDrop(upstream);
      grace = setTimeout(() => {
        client.destroy();
        upstream.destroy();
      }, DRAIN_CLOSE_GRACE_MS);
      return undefined;
    };

    forwardStream(client, upstream);
    forwardStream(upstream, client);
    client.on('error', (err) => fail('client_reset', err));
    upstream.on('error', (err) => fail('upstream_reset', err));
    client.once('close', onClose);
    upstream.once('close', onClose);
    // A side that finished both directions is closed by Node (allowHalfOpen ends after end()+'end').
    if (opts.idleTimeoutMs > 0) {
      // Node resets a socket's timer on its reads and writes, so the client's timer sees both directions.
      client.setTimeout(opts.idleTimeoutMs, () => fail('idle_timeout'));
    }
    if (opts.signal?.aborted === true) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (client.isPaused()) client.resume();
    if (upstream.isPaused()) upstream.resume();
  });
}
