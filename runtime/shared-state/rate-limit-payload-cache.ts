/**
 * Values made from binary rate-limit payloads (decoded and prepared requests), kept by the payload's bytes with its
 * call id left out: a plugin sends the same few payloads again and again (one per user, address or path), and a hit
 * costs a hash and a compare of a few dozen bytes instead of a decode, a rule match and a counter lookup.
 */

/** The call id's bytes (offset 4, 4 bytes): they differ on every call and do not change what is asked. */
const ID_START = 4;
const ID_END = 8;

export interface RateLimitPayloadCacheOptions {
  /** Slots, a power of two; each holds one payload (the last one that hashed there). */
  readonly slots?: number;
  /** Longer payloads are never kept (bounds the memory to slots × this). */
  readonly maxPayloadBytes?: number;
}

/**
 * Direct-mapped: a payload's hash picks its slot, and a payload that hashes to a taken slot replaces what was there.
 * Bounded by construction (at most `slots` payloads of at most `maxPayloadBytes`), and distinct payloads beyond that
 * just cost a decode, as without the cache.
 */
export class RateLimitPayloadCache<T> {
  readonly #bytes: (Uint8Array | undefined)[];
  readonly #values: (T | undefined)[];
  readonly #mask: number;
  readonly #maxPayloadBytes: number;
  readonly #make: (payload: Uint8Array) => T;

  /** `make` turns a payload into its value; it may throw (a malformed payload), and then nothing is kept. */
  constructor(make: (payload: Uint8Array) => T, options: RateLimitPayloadCacheOptions = {}) {
    const slots = options.slots ?? 1024;
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0) throw new RangeError(`slots must be a power of two, got ${slots}`);
    this.#bytes = new Array<Uint8Array | undefined>(slots).fill(undefined);
    this.#values = new Array<T | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 512;
    this.#make = make;
  }

  /** The value of a payload equal to `payload` outside its call id, made (and kept, when short enough) on a miss. */
  get(payload: Uint8Array): T {
    return this.getAt(payload, 0, payload.length);
  }

  /**
   * get() of the payload `b[at, at + len)`, read in place (the guest's memory during a foreign call): copied only on a
   * miss, and `make` gets that copy.
   */
  getAt(b: Uint8Array, at: number, len: number): T {
    if (len > this.#maxPayloadBytes || len < ID_END) return this.#make(b.slice(at, at + len));
    const slot = hashOf(b, at, len) & this.#mask;
    const have = this.#bytes[slot];
    if (have !== undefined && sameOutsideId(have, b, at, len)) return this.#values[slot]!;
    const payload = b.slice(at, at + len);
    const value = this.#make(payload);
    this.#bytes[slot] = payload;
    this.#values[slot] = value;
    return value;
  }

  /** Payloads kept now. */
  get size(): number {
    let n = 0;
    for (const b of this.#bytes) if (b !== undefined) n++;
    return n;
  }
}

/** FNV-1a over every byte of `b[at, at + len)` but the call id's. */
function hashOf(b: Uint8Array, at: number, len: number): number {
  let h = 0x811c9dc5;
  const end = at + len;
  for (let i = at; i < at + ID_START; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  for (let i = at + ID_END; i < end; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  // 30 bits: a small integer to V8 (an unsigned 32-bit result would be a heap number per call); slots are far fewer.
  return h & 0x3fffffff;
}

/** Whether `a` equals `b[at, at + len)` outside the call id. */
function sameOutsideId(a: Uint8Array, b: Uint8Array, at: number, len: number): boolean {
  if (a.length !== len) return false;
  for (let i = 0; i < ID_START; i++) if (a[i] !== b[at + i]) return false;
  for (let i = ID_END; i < len; i++) if (a[i] !== b[at + i]) return false;
  return true;
}
