/** The process's listening sockets by key (`outbound 0.0.0.0:15001`), for handing to a successor, and the sockets inherited from a predecessor, adopted only once the whole app has started. */
import { loadNativeSocket } from '../native/weft-socket.js';

export type SocketKind = 'tcp' | 'udp';

/** What travels with each descriptor: the listener it belongs to and the port it is bound to. */
export interface SocketRecord {
  /** Listener name and configured address: a successor adopts a socket only for the same listener at the same address. */
  key: string;
  kind: SocketKind;
  port: number;
}

interface Held {
  record: SocketRecord;
  fd: () => number | undefined;
}

/** The descriptor of a listening net.Server or dgram handle (libuv's, valid while it is open). */
export function handleFd(handle: unknown): number | undefined {
  const fd = (handle as { fd?: unknown } | null | undefined)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export class SocketHandover {
  readonly #held = new Set<Held>();
  readonly #inherited = new Map<string, { record: SocketRecord; fd: number }[]>();
  readonly #deferred: (() => Promise<void>)[] = [];

  /** Registers a listening socket this process owns; the returned function unregisters it (the listener closed). */
  hold(record: SocketRecord, fd: () => number | undefined): () => void {
    const entry = { record, fd };
    this.#held.add(entry);
    return () => this.#held.delete(entry);
  }

  /** Every held socket with its current descriptor (every worker's, when each registers its own). */
  held(): { record: SocketRecord; fd: number }[] {
    const out: { record: SocketRecord; fd: number }[] = [];
    for (const h of this.#held) {
      const fd = h.fd();
      if (fd !== undefined) out.push({ record: h.record, fd });
    }
    return out;
  }

  /** Sockets received from the process being taken over. */
  inherit(sockets: { record: SocketRecord; fd: number }[]): void {
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
    const list = this.#inherited.get(key) ?? [];
    const mine = list.filter((s) => s.record.kind === kind);
    const rest = list.filter((s) => s.record.kind !== kind);
    if (rest.length === 0) this.#inherited.delete(key);
    else this.#inherited.set(key, rest);
    return mine.map((s) => ({ fd: s.fd, port: s.record.port }));
  }

  /**
   * Runs `activate` at commit(): an inherited socket starts accepting only once everything that can fail at start-up
   * has succeeded, so a successor that fails never takes a connection it would then drop.
   */
  defer(activate: () => Promise<void>): void {
    this.#deferred.push(activate);
  }

  async commit(): Promise<void> {
    const pending = this.#deferred.splice(0);
    for (const activate of pending) await activate();
  }

  /** Closes inherited sockets no listener adopted (the new config dropped them) and forgets deferred activations. */
  discardUnused(): number {
    const native = loadNativeSocket();
    let closed = 0;
    for (const list of this.#inherited.values()) {
      for (const s of list) {
        native?.closeFd?.(s.fd);
        closed++;
      }
    }
    this.#inherited.clear();
    return closed;
  }

  /** Drops deferred activations (start-up failed: the inherited sockets stay with the predecessor). */
  abandon(): void {
    this.#deferred.length = 0;
    this.discardUnused();
  }
}

/** One per process (worker threads register theirs through the main thread). */
export const socketHandover = new SocketHandover();
