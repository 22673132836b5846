/** One plugin's view of one HTTP stream: the maps and body buffers its hostcalls see, and the pause/resume handshake with the filter chain. */
import { monoNow } from '../l7/loop-clock.js';
import { Status, type StatusCode } from './abi-constants.js';
import type { HeaderPairs } from './header-map-codec.js';
import type { HeaderMapSlot } from './lazy-header-map.js';
import type { PluginFailure } from './plugin-failure.js';
import type { PluginVm } from './plugin-vm.js';
import type { PropertyValue } from './properties.js';
import type { StreamInfo } from './stream-info.js';

export interface LocalResponse {
  status: number;
  headers: HeaderPairs;
  body: Uint8Array;
  details: string;
  /** gRPC status for gRPC requests; undefined when the plugin passed -1 (not gRPC). */
  grpcStatus: number | undefined;
  /** The plugin that sent it (or whose failure caused it). */
  plugin: string;
}

/** How a pause ended. */
export type ResumeOutcome = 'continue' | 'local' | 'reset' | PluginFailure;

export type Direction = 0 | 1;

/**
 * A stream context's yes/no state, as bits of one number (one field to initialise per request instead of six). The
 * buffering and continue bits are per direction: the request's bit, shifted left by one for the response.
 */
const BUFFERING = 1;
const CONTINUE = 4;
const AWAITING_PROXY_DONE = 16;
const RELEASED = 32;

export class StreamContext {
  readonly kind = 'stream';
  readonly id: number;
  readonly vm: PluginVm;
  readonly streamInfo: StreamInfo;
  requestHeaders: HeaderMapSlot | undefined;
  requestTrailers: HeaderPairs | undefined;
  responseHeaders: HeaderMapSlot | undefined;
  responseTrailers: HeaderPairs | undefined;
  /** The body bytes the plugin sees in its body callback: everything it buffered plus the new chunk. */
  requestBody: Uint8Array | undefined;
  responseBody: Uint8Array | undefined;
  requestBytes = 0;
  responseBytes = 0;
  propertyOverlay: Map<string, PropertyValue> | undefined;
  localResponse: LocalResponse | undefined;
  resetRequested = false;
  state: 'active' | 'failed' | 'done' = 'active';
  #waiter: { direction: Direction; resolve: (o: ResumeOutcome) => void } | undefined;
  /**
   * BUFFERING: the plugin is holding that direction's body bytes (returned StopIteration* without end_of_stream).
   * CONTINUE: proxy_continue_stream came for that direction while no pause was pending. AWAITING_PROXY_DONE: on_done
   * answered false. RELEASED: the context left its VM.
   */
  #flags = 0;

  constructor(vm: PluginVm, id: number, streamInfo: StreamInfo) {
    this.vm = vm;
    this.id = id;
    this.streamInfo = streamInfo;
  }

  /**
   * Registers a new stream context in `vm` and runs proxy_on_context_create(id, root). The context counts as an active
   * stream of the VM from here until finish(). Throws PluginFailure (the context is then already released).
   */
  static open(vm: PluginVm, streamInfo: StreamInfo): StreamContext {
    const ctx = new StreamContext(vm, vm.newContextId(), streamInfo);
    vm.contexts.set(ctx);
    vm.activeStreams++;
    try {
      vm.invoke2(ctx, vm.cb.onContextCreate, ctx.id, vm.root.id);
    } catch (err) {
      ctx.markFailed();
      throw err;
    }
    return ctx;
  }

  isBuffering(dir: Direction): boolean {
    return (this.#flags & (BUFFERING << dir)) !== 0;
  }

  setBuffering(dir: Direction, on: boolean): void {
    if (on) this.#flags |= BUFFERING << dir;
    else this.#flags &= ~(BUFFERING << dir);
  }

  /** True once (and clears) when the plugin called proxy_continue_stream for `dir` while no pause was pending. */
  takeContinue(dir: Direction): boolean {
    const bit = CONTINUE << dir;
    if ((this.#flags & bit) === 0) return false;
    this.#flags &= ~bit;
    return true;
  }

  /** Resolves when the plugin continues, answers locally, resets, or its VM fails. */
  wait(dir: Direction): Promise<ResumeOutcome> {
    return new Promise<ResumeOutcome>((resolve) => {
      this.#waiter = { direction: dir, resolve };
    });
  }

  #wake(outcome: ResumeOutcome): boolean {
    const w = this.#waiter;
    if (w === undefined) return false;
    this.#waiter = undefined;
    w.resolve(outcome);
    return true;
  }

  continueStream(dir: Direction): StatusCode {
    if (this.state !== 'active') return Status.NotFound;
    if (this.#waiter?.direction === dir) this.#wake('continue');
    else this.#flags |= CONTINUE << dir;
    return Status.Ok;
  }

  closeStream(): void {
    this.resetRequested = true;
    this.#wake('reset');
  }

  sendLocalResponse(response: LocalResponse): void {
    this.localResponse = response;
    this.#wake('local');
  }

  vmFailed(failure: PluginFailure): void {
    this.#wake(failure);
  }

  /** End of stream: on_done, then (now or after proxy_done) on_log and on_delete. Never throws. */
  finish(): void {
    if ((this.#flags & (RELEASED | AWAITING_PROXY_DONE)) !== 0) return;
    this.#wake('reset');
    if (this.state === 'failed' || this.vm.state !== 'ready') return this.#release();
    try {
      const done = this.vm.invoke1(this, this.vm.cb.onDone, this.id);
      if (this.vm.cb.onDone !== undefined && done === 0) {
        this.#flags |= AWAITING_PROXY_DONE;
        return;
      }
      this.#logAndDelete();
    } catch {
      this.#release();
    }
  }

  proxyDone(): StatusCode {
    if ((this.#flags & AWAITING_PROXY_DONE) === 0) return Status.NotFound;
    this.#flags &= ~AWAITING_PROXY_DONE;
    queueMicrotask(() => {
      try {
        this.#logAndDelete();
      } catch {
        this.#release();
      }
    });
    return Status.Ok;
  }

  #logAndDelete(): void {
    if (this.vm.state === 'ready') {
      this.vm.invoke1(this, this.vm.cb.onLog, this.id);
      this.vm.invoke1(this, this.vm.cb.onDelete, this.id);
    }
    this.#release();
  }

  /** Marks the context dead after its plugin failed; the chain skips or fails it per failStrategy. */
  markFailed(): void {
    if (this.state !== 'active') return;
    this.state = 'failed';
    this.#release();
  }

  #release(): void {
    if ((this.#flags & RELEASED) !== 0) return;
    this.#flags |= RELEASED;
    if (this.state === 'active') this.state = 'done';
    this.vm.contexts.delete(this.id);
    // Idle eviction only looks at a VM without streams (PluginVm.busy): its idle time starts with the last release.
    // Stamped with the I/O batch's clock read (loop-clock.ts): at most a batch (sub-millisecond) early against an idle
    // timeout of seconds, and no clock read per request on the HTTP/1 path, where most requests leave their VM idle.
    if (--this.vm.activeStreams === 0) this.vm.lastUsed = monoNow();
    this.vm.onStreamReleased();
  }
}
