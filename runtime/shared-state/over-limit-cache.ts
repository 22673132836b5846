/** Remembers counters already over their limit until they can admit again, so repeated rejections cost no backend call (envoyproxy/ratelimit's local cache, made exact by storing the hits it was denied for). */

export class OverLimitCache {
  readonly #entries = new Map<string, { until: number; hits: number; resetMs: number }>();
  readonly #maxEntries: number;
  #lastSweep = 0;

  constructor(maxEntries = 100_000) {
    this.#maxEntries = maxEntries;
  }

  /**
   * Denials never change a counter (neither algorithm counts rejected hits) and time only frees capacity, so
   * a request for at least `hits` before `until` would be denied too: answering it from here is exact.
   */
  lookup(id: string, hits: number, now: number): { retryAfterMs: number; resetMs: number } | undefined {
    const e = this.#entries.get(id);
    if (e === undefined) return undefined;
    if (e.until <= now) {
      this.#entries.delete(id);
      return undefined;
    }
    if (hits < e.hits) return undefined;
    return { retryAfterMs: e.until - now, resetMs: Math.max(0, e.resetMs - now) };
  }

  remember(id: string, hits: number, now: number, retryAfterMs: number, resetMs: number): void {
    if (retryAfterMs <= 0) return;
    if (this.#entries.size >= this.#maxEntries) this.#sweep(now, true);
    this.#entries.set(id, { until: now + retryAfterMs, hits, resetMs: now + resetMs });
    if (now - this.#lastSweep > 1_000) this.#sweep(now, false);
  }

  #sweep(now: number, full: boolean): void {
    this.#lastSweep = now;
    for (const [k, v] of this.#entries) if (v.until <= now) this.#entries.delete(k);
    // Still full of live entries: drop the oldest; losing one only costs a backend call, never a wrong answer.
    if (full && this.#entries.size >= this.#maxEntries) {
      const first = this.#entries.keys().next();
      if (first.done !== true) this.#entries.delete(first.value);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }
}
