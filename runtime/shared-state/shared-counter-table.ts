/**
 * Rate-limit counters (GCRA TATs, fixed windows) in a SharedArrayBuffer, so every worker thread of one process decides
 * against one state: a 100/s limit is 100/s however many event loops serve it. Decisions run under one spin lock
 * (Atomics); the critical section is a hash probe and a few float writes, well under a microsecond.
 */

/** Slot kinds: a counter id lives once per kind. */
export const COUNTER_KINDS = { gcra: 1, window: 2 } as const;
export type CounterKind = (typeof COUNTER_KINDS)[keyof typeof COUNTER_KINDS];

/** Slots probed from a key's home slot before the soonest-expiring one is evicted (Redis under maxmemory evicts too). */
const PROBE = 32;
const KEY_WORDS = 4;
const VALUE_WORDS = 3;
/** 16384 slots: 16 k distinct live descriptors per process in 640 KB. */
export const DEFAULT_COUNTER_SLOTS = 16_384;

/** Two independent 32-bit FNV-1a hashes of `id` (64 bits: a collision among 16 k live ids is about 1 in 10^11). */
function hashes(id: string): [number, number] {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ id.length;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) ^ (h2 >>> 15);
  }
  // 0 marks an empty slot.
  return [h1 >>> 0 || 1, h2 >>> 0];
}

export class SharedCounterTable {
  readonly buffer: SharedArrayBuffer;
  readonly slots: number;
  readonly #lock: Int32Array;
  readonly #keys: Uint32Array;
  readonly #values: Float64Array;

  /** A new table, or a view of `buffer` made by another thread's table (worker threads receive it in workerData). */
  constructor(bufferOrSlots: SharedArrayBuffer | number = DEFAULT_COUNTER_SLOTS) {
    const slots = typeof bufferOrSlots === 'number' ? bufferOrSlots : (bufferOrSlots.byteLength - 8) / ((KEY_WORDS * 4) + VALUE_WORDS * 8);
    this.slots = slots;
    this.buffer = typeof bufferOrSlots === 'number' ? new SharedArrayBuffer(8 + slots * VALUE_WORDS * 8 + slots * KEY_WORDS * 4) : bufferOrSlots;
    this.#lock = new Int32Array(this.buffer, 0, 2);
    this.#values = new Float64Array(this.buffer, 8, slots * VALUE_WORDS);
    this.#keys = new Uint32Array(this.buffer, 8 + slots * VALUE_WORDS * 8, slots * KEY_WORDS);
  }

  /** Runs `fn` holding the table's lock; `fn` must not await (the lock is a spin lock). */
  withLock<T>(fn: () => T): T {
    while (Atomics.compareExchange(this.#lock, 0, 0, 1) !== 0) {
      // Another thread holds it for well under a microsecond; spinning is cheaper than parking the event loop.
    }
    try {
      return fn();
    } finally {
      Atomics.store(this.#lock, 0, 0);
    }
  }

  #find(kind: CounterKind, h1: number, h2: number): number {
    const home = h1 % this.slots;
    for (let i = 0; i < PROBE; i++) {
      const slot = (home + i) % this.slots;
      const k = slot * KEY_WORDS;
      if (this.#keys[k] === h1 && this.#keys[k + 1] === h2 && this.#keys[k + 2] === kind) return slot;
    }
    return -1;
  }

  /** The stored pair for `id` unless it expired by `nowUs`. Call under withLock. */
  read(kind: CounterKind, id: string, nowUs: number): { a: number; b: number; expiresUs: number } | undefined {
    const [h1, h2] = hashes(id);
    const slot = this.#find(kind, h1, h2);
    if (slot < 0) return undefined;
    const v = slot * VALUE_WORDS;
    const expiresUs = this.#values[v + 2]!;
    if (expiresUs <= nowUs) return undefined;
    return { a: this.#values[v]!, b: this.#values[v + 1]!, expiresUs };
  }

  /** Stores (a, b) for `id` until `expiresUs`. Call under withLock. */
  write(kind: CounterKind, id: string, a: number, b: number, expiresUs: number, nowUs: number): void {
    const [h1, h2] = hashes(id);
    let slot = this.#find(kind, h1, h2);
    if (slot < 0) slot = this.#victim(h1, nowUs);
    const k = slot * KEY_WORDS;
    this.#keys[k] = h1;
    this.#keys[k + 1] = h2;
    this.#keys[k + 2] = kind;
    const v = slot * VALUE_WORDS;
    this.#values[v] = a;
    this.#values[v + 1] = b;
    this.#values[v + 2] = expiresUs;
  }

  /** An empty or expired slot near the key's home, else the one that expires soonest. */
  #victim(h1: number, nowUs: number): number {
    const home = h1 % this.slots;
    let best = home;
    let bestExpiry = Infinity;
    for (let i = 0; i < PROBE; i++) {
      const slot = (home + i) % this.slots;
      const expiry = this.#keys[slot * KEY_WORDS] === 0 ? 0 : this.#values[slot * VALUE_WORDS + 2]!;
      if (expiry <= nowUs) return slot;
      if (expiry < bestExpiry) {
        best = slot;
        bestExpiry = expiry;
      }
    }
    return best;
  }
}
