/** The process's listening sockets by key (`outbound 0.0.0.0:15001`), for handing to a successor, and the sockets inherited from a predecessor, adopted only once the whole app has started. */
import { WeftError } from '../errors.js';
import { loadNativeSocket, requireNativeSocket } from '../native/weft-socket.js';

export type SocketKind = 'tcp' | 'udp';

/** What travels with each descriptor: the listener it belongs to and the port it is bound to. */
export interface SocketRecord {
  /** Listener name and configured address: a successor adopts a socket only for the same listener at the same address. */
  key: string;
  kind: SocketKind;
  port: number;
  /**
   * The listener is made after start-up, when its owner learns it is needed (in-pod listeners, as the node agent
   * replays its pods): a successor keeps such a socket open past commit, for `LATE_ADOPTION_MS`.
   */
  late?: boolean;
}

export interface HandoverSocket {
  record: SocketRecord;
  fd: number;
}

interface Held {
  record: SocketRecord;
  fd: () => number | undefined;
}

/** How long an inherited socket marked `late` waits for its listener after commit before it is closed. */
export const LATE_ADOPTION_MS = 30_000;

/** The descriptor of a listening net.Server or dgram handle (libuv's, valid while it is open). */
export function handleFd(handle: unknown): number | undefined {
  const fd = (handle as { fd?: unknown } | null | undefined)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** A close-on-exec duplicate of `fd`: what a worker thread lends, and what a worker beyond the inherited sockets gets. */
export function duplicateFd(fd: number): number {
  const native = requireNativeSocket('weft run --takeover');
  if (native.dupFd === undefined) throw new WeftError('WEFT_ERR_NATIVE_UNAVAILABLE', 'weft run --takeover needs the native addon rebuilt (npm install)');
  return native.dupFd(fd);
}

export class SocketHandover {
  readonly #held = new Set<Held>();
  readonly #inherited = new Map<string, HandoverSocket[]>();
  readonly #deferred: (() => Promise<void>)[] = [];
  /** Addresses as this thread's config names them -> as the user configured them (port 0 pinned across workers). */
  #aliases = new Map<string, string>();
  #committed = false;
  #lateTimer: NodeJS.Timeout | undefined;

  /**
   * A worker thread's listeners are bound at the port the first worker got (runtime/workers/pin-ports.ts), so their
   * addresses differ from the configured `127.0.0.1:0`. Keys are compared with those addresses mapped back, which is
   * how a successor, whose pins differ, still finds every socket.
   */
  setAliases(aliases: Iterable<[string, string]>): void {
    this.#aliases = new Map(aliases);
  }

  #canonical(key: string): string {
    if (this.#aliases.size === 0) return key;
    return key
      .split(' ')
      .map((part) => this.#aliases.get(part) ?? part)
      .join(' ');
  }

  /** Registers a listening socket this process owns; the returned function unregisters it (the listener closed). */
  hold(record: SocketRecord, fd: () => number | undefined): () => void {
    const entry = { record, fd };
    this.#held.add(entry);
    return () => this.#held.delete(entry);
  }

  /** Every held socket with its current descriptor (every worker's, when each registers its own). */
  held(): HandoverSocket[] {
    const out: HandoverSocket[] = [];
    for (const h of this.#held) {
      const fd = h.fd();
      if (fd !== undefined) out.push({ record: { ...h.record, key: this.#canonical(h.record.key) }, fd });
    }
    return out;
  }

  /** Sockets received from the process being taken over (or, in a worker thread, the share the primary gave it). */
  inherit(sockets: HandoverSocket[]): void {
    for (const s of sockets) {
      const list = this.#inherited.get(s.record.key) ?? [];
      list.push(s);
      this.#inherited.set(s.record.key, list);
    }
  }

  get inheriting(): boolean {
    return this.#inherited.size > 0;
  }

  /**
   * All inherited sockets for `key` and `kind` (the predecessor's workers each had their own, in one SO_REUSEPORT
   * group): the caller adopts every one of them, so no accept queue is left without a reader.
   */
  take(key: string, kind: SocketKind): { fd: number; port: number }[] {
    const canonical = this.#canonical(key);
    const list = this.#inherited.get(canonical) ?? [];
    const mine = list.filter((s) => s.record.kind === kind);
    const rest = list.filter((s) => s.record.kind !== kind);
    if (rest.length === 0) this.#inherited.delete(canonical);
    else this.#inherited.set(canonical, rest);
    return mine.map((s) => ({ fd: s.fd, port: s.record.port }));
  }

  /** Removes and returns the inherited sockets `wanted` selects (the worker primary shares them out among its threads). */
  extract(wanted: (record: SocketRecord) => boolean): HandoverSocket[] {
    const out: HandoverSocket[] = [];
    for (const [key, list] of this.#inherited) {
      const keep = list.filter((s) => !wanted(s.record));
      out.push(...list.filter((s) => wanted(s.record)));
      if (keep.length === 0) this.#inherited.delete(key);
      else this.#inherited.set(key, keep);
    }
    return out;
  }

  /**
   * Runs `activate` at commit(): an inherited socket starts accepting only once everything that can fail at start-up
   * has succeeded, so a successor that fails never takes a connection it would then drop. After commit (a listener
   * made late, see SocketRecord.late) it runs at once, and the returned promise is its completion.
   */
  defer(activate: () => Promise<void>): Promise<void> {
    if (this.#committed) return activate();
    this.#deferred.push(activate);
    return Promise.resolve();
  }

  async commit(): Promise<void> {
    this.#committed = true;
    const pending = this.#deferred.splice(0);
    for (const activate of pending) await activate();
  }

  /**
   * Closes inherited sockets no listener adopted (the new config dropped them) and forgets deferred activations.
   * Sockets marked `late` are kept for their listeners for LATE_ADOPTION_MS, unless `includeLate`.
   */
  discardUnused(includeLate = false): number {
    const native = loadNativeSocket();
    let closed = 0;
    for (const [key, list] of this.#inherited) {
      const keep = includeLate ? [] : list.filter((s) => s.record.late === true);
      for (const s of list) {
        if (keep.includes(s)) continue;
        native?.closeFd?.(s.fd);
        closed++;
      }
      if (keep.length === 0) this.#inherited.delete(key);
      else this.#inherited.set(key, keep);
    }
    if (this.#inherited.size > 0 && this.#lateTimer === undefined) {
      this.#lateTimer = setTimeout(() => {
        this.#lateTimer = undefined;
        this.discardUnused(true);
      }, LATE_ADOPTION_MS);
      this.#lateTimer.unref();
    }
    return closed;
  }

  /** Drops deferred activations (start-up failed: the inherited sockets stay with the predecessor). */
  abandon(): void {
    this.#deferred.length = 0;
    this.discardUnused(true);
  }
}

/** One per thread: the main thread's, and in each worker thread that worker's (the primary gathers and shares them out). */
export const socketHandover = new SocketHandover();
