/**
 * The proxy-wasm contexts of one VM by id: an open-addressing table in two fixed arrays, for the stream contexts
 * that come and go with every request.
 *
 * Why not a Map: V8's Map keeps every backing table it outgrows linked to its successor (for live iterators), and
 * it outgrows one every few dozen set/delete pairs. Once one such table reaches the old generation (any pause
 * between two scavenges while it is current does it), the dead table keeps the next one alive through each
 * scavenge, that one the next, and with them every context they held and each context's whole request: measured
 * on `weft run`, a quarter of all the young generation survived every scavenge and a mark-compact ran every second,
 * until the process exited. Here the slots are overwritten in place, so a removed context is unreachable at once.
 */
export class ContextTable<T extends { readonly id: number }> {
  /** Context ids (never 0), 0 for an empty slot; linear probing from `id & mask`. */
  #ids = new Uint32Array(16);
  #records: (T | undefined)[] = new Array<T | undefined>(16).fill(undefined);
  #mask = 15;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(id: number): T | undefined {
    if (id === 0) return undefined;
    const ids = this.#ids;
    for (let i = id & this.#mask; ; i = (i + 1) & this.#mask) {
      const at = ids[i]!;
      if (at === id) return this.#records[i];
      if (at === 0) return undefined;
    }
  }

  /** Adds or replaces the record under its id (ids are uint32 and never 0). */
  set(record: T): void {
    const id = record.id >>> 0;
    if (id === 0) throw new RangeError('context id 0 is reserved');
    // At most half full, so a probe always meets an empty slot soon.
    if ((this.#size + 1) * 2 > this.#ids.length) this.#grow();
    const i = this.#slotOf(id);
    if (this.#ids[i] === 0) this.#size++;
    this.#ids[i] = id;
    this.#records[i] = record;
  }

  delete(id: number): boolean {
    id >>>= 0;
    if (id === 0) return false;
    const ids = this.#ids;
    const mask = this.#mask;
    let i = this.#slotOf(id);
    if (ids[i] === 0) return false;
    // Backward-shift deletion: later entries of the same probe run move up, so no tombstones accumulate.
    for (let j = (i + 1) & mask; ids[j] !== 0; j = (j + 1) & mask) {
      const home = ids[j]! & mask;
      // Entry j may fill slot i only if its home slot is not inside the cyclic range (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        ids[i] = ids[j]!;
        this.#records[i] = this.#records[j];
        i = j;
      }
    }
    ids[i] = 0;
    this.#records[i] = undefined;
    this.#size--;
    return true;
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** The records now in the table, as a new array (safe to iterate while the table changes). */
  list(): T[] {
    const out: T[] = [];
    for (const r of this.#records) if (r !== undefined) out.push(r);
    return out;
  }

  clear(): void {
    this.#ids.fill(0);
    this.#records.fill(undefined);
    this.#size = 0;
  }

  /** The slot holding `id`, or the empty slot where it belongs. */
  #slotOf(id: number): number {
    const ids = this.#ids;
    let i = id & this.#mask;
    while (ids[i] !== 0 && ids[i] !== id) i = (i + 1) & this.#mask;
    return i;
  }

  #grow(): void {
    const oldRecords = this.#records;
    const capacity = this.#ids.length * 2;
    this.#ids = new Uint32Array(capacity);
    this.#records = new Array<T | undefined>(capacity).fill(undefined);
    this.#mask = capacity - 1;
    this.#size = 0;
    for (const r of oldRecords) if (r !== undefined) this.set(r);
    // The old array may already be in the old generation: emptied, it keeps nothing alive until it is collected.
    oldRecords.fill(undefined);
  }
}
