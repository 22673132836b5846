// Verified tokens of one provider, as Envoy's jwt_authn keeps them with `jwt_cache_config`: a bounded LRU keyed by the
// token's bytes (a hash, then a full compare) holding what a later request with the same token needs, so it costs a
// lookup, a clock check and the header writes instead of decoding, parsing and a signature check.

/** Envoy's defaults (jwt_authn/jwt_cache.cc): 100 tokens, none longer than 4 KiB. */
export const DEFAULT_CACHE_SIZE: i32 = 100;
export const DEFAULT_MAX_TOKEN_BYTES: i32 = 4096;

/** What a request with this token needs once its signature, issuer and audiences have been checked. */
export class CachedToken {
  hash: u32 = 0;
  token: ArrayBuffer = new ArrayBuffer(0);
  hasExp: bool = false;
  exp: i64 = 0;
  hasNbf: bool = false;
  nbf: i64 = 0;
  /** UTF-8 value per entry of the provider's claimToHeaders; null where the token lacks the claim. */
  claims: Array<ArrayBuffer | null> = new Array<ArrayBuffer | null>();
  /** The base64url payload segment (forwardPayloadHeader). */
  payload: ArrayBuffer = new ArrayBuffer(0);
  newer: CachedToken | null = null;
  older: CachedToken | null = null;
}

/** Bytes hashed from a token's end: its signature's, which differ between any two verified tokens (see tokenHash). */
const HASHED_TAIL: usize = 16;

/**
 * Token bytes → u32 from the length and the last HASHED_TAIL bytes, four bytes a step (murmur3's mixing). A JWT ends in
 * its signature (RS/PS/ES: 43 or more base64url characters), which no two verified tokens share, while their heads (header,
 * often the payload's start) repeat from token to token: the tail spreads tokens as well as all bytes would, and a
 * lookup hashes 16 bytes instead of a few hundred. Equal hashes are always confirmed by comparing every byte. Not keyed:
 * only tokens whose signature verified are ever inserted, so a client cannot fill a probe chain with colliding garbage.
 */
export function tokenHash(ptr: usize, len: usize): u32 {
  let h: u32 = <u32>len * 0x9e3779b1;
  let i: usize = len > HASHED_TAIL ? len - HASHED_TAIL : 0;
  for (; i + 4 <= len; i += 4) {
    let k = load<u32>(ptr + i) * 0xcc9e2d51;
    k = rotl<u32>(k, 15) * 0x1b873593;
    h = rotl<u32>(h ^ k, 13) * 5 + 0xe6546b64;
  }
  for (; i < len; i++) h = (h ^ <u32>load<u8>(ptr + i)) * 0x01000193;
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  return h ^ (h >> 16);
}

function sameBytes(a: usize, b: usize, len: usize): bool {
  let i: usize = 0;
  for (; i + 8 <= len; i += 8) if (load<u64>(a + i) != load<u64>(b + i)) return false;
  for (; i < len; i++) if (load<u8>(a + i) != load<u8>(b + i)) return false;
  return true;
}

/** An LRU of at most `capacity` tokens in an open-addressed table (linear probing, at most half full). */
export class TokenCache {
  private table: StaticArray<CachedToken | null>;
  private mask: u32;
  private count: i32 = 0;
  private newest: CachedToken | null = null;
  private oldest: CachedToken | null = null;

  constructor(public readonly capacity: i32, public readonly maxTokenBytes: i32) {
    let slots: u32 = 8;
    while (slots < <u32>capacity * 2) slots <<= 1;
    this.table = new StaticArray<CachedToken | null>(slots);
    this.mask = slots - 1;
  }

  get size(): i32 {
    return this.count;
  }

  /** The entry for the token at `ptr` (`len` bytes, `hash` = tokenHash), made the most recent; null when absent. */
  lookup(ptr: usize, len: usize, hash: u32): CachedToken | null {
    let i = hash & this.mask;
    while (true) {
      const e = unchecked(this.table[i]);
      if (e === null) return null;
      if (e.hash == hash && <usize>e.token.byteLength == len && sameBytes(changetype<usize>(e.token), ptr, len)) {
        this.touch(e);
        return e;
      }
      i = (i + 1) & this.mask;
    }
  }

  /** Adds `e` (replacing an entry for the same token), evicting the least recently used beyond capacity. */
  insert(e: CachedToken): void {
    if (this.capacity <= 0 || e.token.byteLength > this.maxTokenBytes) return;
    const same = this.lookup(changetype<usize>(e.token), e.token.byteLength, e.hash);
    if (same !== null) this.remove(same);
    if (this.count >= this.capacity) this.remove(this.oldest!);
    let i = e.hash & this.mask;
    while (unchecked(this.table[i]) !== null) i = (i + 1) & this.mask;
    unchecked(this.table[i] = e);
    this.count++;
    this.linkNewest(e);
  }

  /** Drops `e` (an entry of this cache). */
  remove(e: CachedToken): void {
    let i = e.hash & this.mask;
    while (unchecked(this.table[i]) !== e) i = (i + 1) & this.mask;
    unchecked(this.table[i] = null);
    // Backward-shift deletion: move later members of the probe run into the hole when their home slot allows it, so
    // lookups can stop at the first empty slot (no tombstones).
    let j = i;
    while (true) {
      j = (j + 1) & this.mask;
      const m = unchecked(this.table[j]);
      if (m === null) break;
      const home = m.hash & this.mask;
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (between) continue;
      unchecked(this.table[i] = m);
      unchecked(this.table[j] = null);
      i = j;
    }
    this.count--;
    this.unlink(e);
  }

  clear(): void {
    for (let i = 0; i < this.table.length; i++) unchecked(this.table[i] = null);
    this.count = 0;
    this.newest = null;
    this.oldest = null;
  }

  private touch(e: CachedToken): void {
    if (this.newest === e) return;
    this.unlink(e);
    this.linkNewest(e);
  }

  private linkNewest(e: CachedToken): void {
    e.older = this.newest;
    e.newer = null;
    if (this.newest !== null) this.newest!.newer = e;
    this.newest = e;
    if (this.oldest === null) this.oldest = e;
  }

  private unlink(e: CachedToken): void {
    const newer = e.newer;
    const older = e.older;
    if (newer !== null) newer.older = older;
    else this.newest = older;
    if (older !== null) older.newer = newer;
    else this.oldest = newer;
    e.newer = null;
    e.older = null;
  }
}
