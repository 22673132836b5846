/**
 * The per-request chain of plugins the L7 path drives: it feeds each plugin's stream context in order (responses in
 * reverse order, as Envoy's encoder filters run), turns callback results into actions, buffers bodies for
 * StopIterationAndBuffer, and applies failStrategy when a plugin fails mid-request.
 *
 * Contract for the caller: headers are mutated in place; after a `pause` action, wait for `resume` before feeding the
 * next event of the same direction; call `done()` exactly once when the stream ends, however it ends.
 */
import { WeftError } from '../errors.js';
import type { HeaderPairs } from './header-map-codec.js';
import type { HeaderMapSlot } from './lazy-header-map.js';
import { PluginFailure } from './plugin-failure.js';
import type { PluginRuntime } from './plugin-runtime.js';
import type { Callbacks, Guest2, Guest3 } from './guest-callbacks.js';
import { type Direction, type LocalResponse, type ResumeOutcome, StreamContext } from './stream-context.js';
import type { StreamInfo } from './stream-info.js';

export type FilterAction =
  /** Go on; headers/trailers were edited in place. For body and trailers events, `body` is the bytes to forward now. */
  | { readonly kind: 'continue'; readonly body?: Uint8Array }
  /** Body event only: a plugin is holding the bytes; nothing to forward yet (they come back in a later action's body). */
  | { readonly kind: 'buffer' }
  /** A plugin paused the stream; `resume` settles with the action to apply (never another pause). */
  | { readonly kind: 'pause'; readonly resume: Promise<FilterAction> }
  /** Answer the client with this response and stop (plugin's proxy_send_local_response, or failStrategy). */
  | { readonly kind: 'localResponse'; readonly response: LocalResponse; readonly failure?: PluginFailure }
  /** A plugin called proxy_close_stream (reset the stream / close the connection), or done() was already called. */
  | { readonly kind: 'reset'; readonly plugin: string };

export const CONTINUE: FilterAction = Object.freeze({ kind: 'continue' });
const BUFFER: FilterAction = Object.freeze({ kind: 'buffer' });
/** What every event (and a pending pause) answers once done() was called: the stream is gone. */
const GONE: FilterAction = Object.freeze({ kind: 'reset', plugin: '' });
const EMPTY = new Uint8Array(0);

/** The header weft sets on responses it generates itself. */
export const WEFT_ERROR_HEADER = 'x-weft-error';

/** Which guest callback a #call runs: the request's phase is even, the response's the next odd number. */
type Phase = 0 | 1 | 2 | 3 | 4 | 5;
const REQUEST_HEADERS = 0;
const RESPONSE_HEADERS = 1;
const REQUEST_BODY = 2;
const RESPONSE_BODY = 3;
const REQUEST_TRAILERS = 4;
const RESPONSE_TRAILERS = 5;

/** The callback of `phase`: headers and body callbacks take (context, size, end_of_stream), trailers (context, count). */
function callbackOf(cb: Callbacks, phase: Phase): Guest3 | Guest2 | undefined {
  switch (phase) {
    case REQUEST_HEADERS:
      return cb.onRequestHeaders;
    case RESPONSE_HEADERS:
      return cb.onResponseHeaders;
    case REQUEST_BODY:
      return cb.onRequestBody;
    case RESPONSE_BODY:
      return cb.onResponseBody;
    case REQUEST_TRAILERS:
      return cb.onRequestTrailers;
    default:
      return cb.onResponseTrailers;
  }
}

/** No plugin of the chain has a context yet: the slots array is made on the first one. */
const NO_CONTEXTS: (StreamContext | undefined)[] = [];

export class FilterChain {
  /** The plugins in chain order: PluginHost's cached array, shared by every chain of these names and never written. */
  readonly #runtimes: readonly PluginRuntime[];
  /**
   * Each plugin's stream context by chain position, created on its first callback. One exact-size array per chain and
   * no per-plugin record: a growing array (capacity 17 after the first push) and an entry object per plugin were most
   * of what a chain allocated.
   */
  #contexts: (StreamContext | undefined)[] = NO_CONTEXTS;
  /** FAIL_OPEN after a failure: positions that sit out the rest of this stream (made on the first failure). */
  #skipped: boolean[] | undefined;
  readonly #info: StreamInfo;
  #requestHeaders: HeaderMapSlot | undefined;
  #requestTrailers: HeaderPairs | undefined;
  #responseHeaders: HeaderMapSlot | undefined;
  #responseTrailers: HeaderPairs | undefined;
  #ended: FilterAction | undefined;
  #done = false;

  constructor(runtimes: readonly PluginRuntime[], info: StreamInfo) {
    this.#runtimes = runtimes;
    this.#info = info;
  }

  get plugins(): string[] {
    return this.#runtimes.map((rt) => rt.name);
  }

  /** `headers` may be a LazyHeaderMap the embedder reads back after the chain continues (see lazy-header-map.ts). */
  onRequestHeaders(headers: HeaderMapSlot, endOfStream: boolean): FilterAction {
    this.#requestHeaders = headers;
    if (this.#done) return GONE;
    return this.#ended ?? this.#headers(0, 0, endOfStream);
  }

  onResponseHeaders(headers: HeaderMapSlot, endOfStream: boolean): FilterAction {
    this.#responseHeaders = headers;
    if (this.#done) return GONE;
    return this.#ended ?? this.#headers(1, 0, endOfStream);
  }

  onRequestBody(chunk: Uint8Array, endOfStream: boolean): FilterAction {
    if (this.#done) return GONE;
    return this.#ended ?? this.#body(0, 0, chunk, endOfStream);
  }

  onResponseBody(chunk: Uint8Array, endOfStream: boolean): FilterAction {
    if (this.#done) return GONE;
    return this.#ended ?? this.#body(1, 0, chunk, endOfStream);
  }

  onRequestTrailers(trailers: HeaderPairs): FilterAction {
    this.#requestTrailers = trailers;
    if (this.#done) return GONE;
    return this.#ended ?? this.#trailers(0, trailers);
  }

  onResponseTrailers(trailers: HeaderPairs): FilterAction {
    this.#responseTrailers = trailers;
    if (this.#done) return GONE;
    return this.#ended ?? this.#trailers(1, trailers);
  }

  /** Stream over (completed, reset or abandoned): every plugin gets on_done, on_log, on_delete. Idempotent. */
  done(): void {
    if (this.#done) return;
    this.#done = true;
    const contexts = this.#contexts;
    for (let i = 0; i < contexts.length; i++) {
      const ctx = contexts[i];
      if (ctx === undefined) continue;
      this.#sync(ctx);
      ctx.finish();
    }
  }

  #index(dir: Direction, k: number): number {
    return dir === 0 ? k : this.#runtimes.length - 1 - k;
  }

  #isSkipped(i: number): boolean {
    const skipped = this.#skipped;
    return skipped !== undefined && skipped[i] === true;
  }

  #sync(ctx: StreamContext): void {
    ctx.requestHeaders = this.#requestHeaders;
    ctx.requestTrailers = this.#requestTrailers;
    ctx.responseHeaders = this.#responseHeaders;
    ctx.responseTrailers = this.#responseTrailers;
  }

  /** The context of the plugin at chain position `i`, created on first use; a PluginFailure when its VM cannot be had. */
  #context(i: number): StreamContext | PluginFailure {
    let contexts = this.#contexts;
    const existing = contexts[i];
    if (existing !== undefined) return existing;
    const vm = this.#runtimes[i]!.acquire();
    if (vm instanceof PluginFailure) return vm;
    try {
      // Not synced here: every caller goes on to #call, which syncs the maps right before the callback.
      const ctx = StreamContext.open(vm, this.#info);
      if (contexts === NO_CONTEXTS) contexts = this.#contexts = emptySlots(this.#runtimes.length);
      contexts[i] = ctx;
      return ctx;
    } catch (err) {
      return err instanceof PluginFailure ? err : vm.fail(err);
    }
  }

  /** failStrategy for the plugin at chain position `i`: undefined to go on without it (FAIL_OPEN), else the action ending the stream. */
  #failed(i: number, failure: PluginFailure): FilterAction | undefined {
    (this.#skipped ??= [])[i] = true;
    this.#contexts[i]?.markFailed();
    const runtime = this.#runtimes[i]!;
    runtime.noteStreamFailure(failure);
    if (runtime.failStrategy === 'FAIL_OPEN') return undefined;
    const body = Buffer.from(`plugin ${runtime.name} failed: ${failure.reason}\n`);
    const response: LocalResponse = {
      status: 503,
      headers: [
        ['content-type', 'text/plain'],
        [WEFT_ERROR_HEADER, failure.code],
      ],
      body,
      details: `wasm_fail_${failure.reason}`,
      grpcStatus: undefined,
      plugin: runtime.name,
    };
    return this.#end({ kind: 'localResponse', response, failure });
  }

  #end(action: FilterAction): FilterAction {
    this.#ended = action;
    return action;
  }

  /** After a callback: did the plugin answer locally or reset? */
  #terminal(ctx: StreamContext): FilterAction | undefined {
    if (ctx.localResponse !== undefined) return this.#end({ kind: 'localResponse', response: ctx.localResponse });
    if (ctx.resetRequested) return this.#end({ kind: 'reset', plugin: ctx.vm.plugin });
    return undefined;
  }

  /**
   * Runs the plugin's callback of `phase` with (ctx.id, size, b), or (ctx.id, size) for trailers: the context it ran in
   * (its return value in #result, 0 when the plugin does not export that callback), or what its failure means (an
   * action, or undefined under FAIL_OPEN). `size` may be the header map itself: its length is only counted for a plugin
   * that exports the callback (a lazy map counts its source's fields).
   */
  #call(i: number, phase: Phase, size: number | HeaderMapSlot, b: number): StreamContext | FilterAction | undefined {
    const ctx = this.#context(i);
    if (ctx instanceof PluginFailure) return this.#failed(i, ctx);
    this.#sync(ctx);
    const vm = ctx.vm;
    const fn = callbackOf(vm.cb, phase);
    if (fn === undefined) {
      this.#result = 0;
      return ctx;
    }
    try {
      const n = typeof size === 'number' ? size : size.length;
      this.#result = phase >= REQUEST_TRAILERS ? vm.invoke2(ctx, fn as Guest2, ctx.id, n) : vm.invoke3(ctx, fn, ctx.id, n, b);
      return ctx;
    } catch (err) {
      return this.#failed(i, err instanceof PluginFailure ? err : vm.fail(err));
    }
  }

  /** The return value of the latest #call. */
  #result = 0;

  #pause(i: number, ctx: StreamContext, dir: Direction, next: () => FilterAction): FilterAction {
    const resume = ctx.wait(dir).then((outcome: ResumeOutcome): FilterAction | Promise<FilterAction> => {
      if (this.#ended !== undefined) return this.#ended;
      if (this.#done) return GONE;
      if (outcome instanceof PluginFailure) {
        const failed = this.#failed(i, outcome);
        if (failed !== undefined) return failed;
      } else if (outcome !== 'continue') return this.#terminal(ctx) ?? CONTINUE;
      const a = next();
      return a.kind === 'pause' ? a.resume : a;
    });
    return { kind: 'pause', resume };
  }

  #headers(dir: Direction, from: number, eos: boolean): FilterAction {
    const n = this.#runtimes.length;
    const map = dir === 0 ? this.#requestHeaders! : this.#responseHeaders!;
    for (let k = from; k < n; k++) {
      const i = this.#index(dir, k);
      if (this.#isSkipped(i)) continue;
      const ctx = this.#call(i, dir === 0 ? REQUEST_HEADERS : RESPONSE_HEADERS, map, eos ? 1 : 0);
      if (ctx === undefined) continue;
      if (!(ctx instanceof StreamContext)) return ctx;
      const t = this.#terminal(ctx);
      if (t !== undefined) return t;
      // Any non-zero header status stops the whole stream until proxy_continue_stream, as cpp-host does.
      if (this.#result !== 0 && !ctx.takeContinue(dir)) return this.#pause(i, ctx, dir, () => this.#headers(dir, k + 1, eos));
    }
    return CONTINUE;
  }

  #body(dir: Direction, from: number, chunk: Uint8Array, eos: boolean): FilterAction {
    const n = this.#runtimes.length;
    let data = chunk;
    for (let k = from; k < n; k++) {
      const i = this.#index(dir, k);
      if (this.#isSkipped(i)) continue;
      const ctx0 = this.#context(i);
      if (ctx0 instanceof PluginFailure) {
        const f = this.#failed(i, ctx0);
        if (f !== undefined) return f;
        continue;
      }
      const held = dir === 0 ? ctx0.requestBody : ctx0.responseBody;
      const visible = ctx0.isBuffering(dir) && held !== undefined && held.length > 0 ? concat(held, data) : data;
      if (dir === 0) {
        ctx0.requestBody = visible;
        ctx0.requestBytes += data.length;
      } else {
        ctx0.responseBody = visible;
        ctx0.responseBytes += data.length;
      }
      const ctx = this.#call(i, dir === 0 ? REQUEST_BODY : RESPONSE_BODY, visible.length, eos ? 1 : 0);
      if (ctx === undefined) continue;
      if (!(ctx instanceof StreamContext)) return ctx;
      const result = this.#result;
      const t = this.#terminal(ctx);
      if (t !== undefined) return t;
      const current = (dir === 0 ? ctx.requestBody : ctx.responseBody) ?? EMPTY;
      if (result === 0 || ctx.takeContinue(dir)) {
        ctx.setBuffering(dir, false);
        data = current;
        continue;
      }
      if (result === 3 && !eos) {
        // StopIterationNoBuffer: the plugin keeps what it needs; the chunk goes no further.
        ctx.setBuffering(dir, false);
        return BUFFER;
      }
      ctx.setBuffering(dir, true);
      if (!eos) return BUFFER;
      // Stopped at end of stream: nothing more will arrive, so wait for proxy_continue_stream to release the body.
      return this.#pause(i, ctx, dir, () => {
        ctx.setBuffering(dir, false);
        return this.#body(dir, k + 1, (dir === 0 ? ctx.requestBody : ctx.responseBody) ?? EMPTY, true);
      });
    }
    return { kind: 'continue', body: data };
  }

  /** Trailers end the body: bytes still held are released (through the plugins after the holder), then each plugin sees the trailers. */
  #trailers(dir: Direction, trailers: HeaderPairs): FilterAction {
    const n = this.#runtimes.length;
    let released: Uint8Array = EMPTY;
    for (let k = 0; k < n; k++) {
      const i = this.#index(dir, k);
      const ctx = this.#contexts[i];
      if (ctx === undefined || this.#isSkipped(i)) continue;
      if (ctx.isBuffering(dir)) {
        ctx.setBuffering(dir, false);
        released = concat((dir === 0 ? ctx.requestBody : ctx.responseBody) ?? EMPTY, released);
      } else if (released.length > 0) {
        if (dir === 0) ctx.requestBody = released;
        else ctx.responseBody = released;
        const r = this.#call(i, dir === 0 ? REQUEST_BODY : RESPONSE_BODY, released.length, 0);
        if (r !== undefined && !(r instanceof StreamContext)) return r;
        if (r !== undefined) released = (dir === 0 ? r.requestBody : r.responseBody) ?? EMPTY;
      }
    }
    const action = this.#trailerCallbacks(dir, 0, trailers);
    if (released.length === 0) return action;
    if (action.kind === 'continue') return { kind: 'continue', body: released };
    if (action.kind === 'pause') return { kind: 'pause', resume: action.resume.then((a) => (a.kind === 'continue' ? { kind: 'continue', body: released } : a)) };
    return action;
  }

  #trailerCallbacks(dir: Direction, from: number, trailers: HeaderPairs): FilterAction {
    const n = this.#runtimes.length;
    for (let k = from; k < n; k++) {
      const i = this.#index(dir, k);
      if (this.#isSkipped(i)) continue;
      const ctx = this.#call(i, dir === 0 ? REQUEST_TRAILERS : RESPONSE_TRAILERS, trailers.length, 0);
      if (ctx === undefined) continue;
      if (!(ctx instanceof StreamContext)) return ctx;
      const t = this.#terminal(ctx);
      if (t !== undefined) return t;
      if (this.#result !== 0 && !ctx.takeContinue(dir)) return this.#pause(i, ctx, dir, () => this.#trailerCallbacks(dir, k + 1, trailers));
    }
    return CONTINUE;
  }
}

/** `n` empty context slots (a loop: Array.prototype.fill runs as a C++ builtin, slower than the allocation itself). */
function emptySlots(n: number): (StreamContext | undefined)[] {
  const slots = new Array<StreamContext | undefined>(n);
  for (let i = 0; i < n; i++) slots[i] = undefined;
  return slots;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Thrown by PluginHost.createStream for a plugin name that is not loaded: a wiring bug, not bad input. */
export function unknownPluginError(name: string, known: string[]): WeftError {
  return new WeftError('WEFT_ERR_PLUGIN_FAILED', `no plugin named "${name}" is loaded (loaded: ${known.join(', ') || 'none'}); attach only plugins present in the configuration`);
}
