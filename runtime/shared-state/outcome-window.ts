/** A node-local time window of call outcomes in ten buckets: what a breaker decides on while the shared window in Redis is out of reach. */

export class OutcomeWindow {
  readonly #bucketMs: number;
  readonly #successes: number[];
  readonly #failures: number[];
  readonly #index: number[];

  constructor(windowMs: number, buckets = 10) {
    this.#bucketMs = Math.max(1, Math.floor(windowMs / buckets));
    this.#successes = new Array<number>(buckets).fill(0);
    this.#failures = new Array<number>(buckets).fill(0);
    this.#index = new Array<number>(buckets).fill(-1);
  }

  add(success: boolean, now: number): void {
    const b = Math.floor(now / this.#bucketMs);
    const slot = b % this.#index.length;
    if (this.#index[slot] !== b) {
      this.#index[slot] = b;
      this.#successes[slot] = 0;
      this.#failures[slot] = 0;
    }
    if (success) this.#successes[slot]!++;
    else this.#failures[slot]!++;
  }

  totals(now: number): { calls: number; failures: number } {
    const current = Math.floor(now / this.#bucketMs);
    let calls = 0;
    let failures = 0;
    for (let i = 0; i < this.#index.length; i++) {
      const b = this.#index[i]!;
      if (b < 0 || b <= current - this.#index.length) continue;
      calls += this.#successes[i]! + this.#failures[i]!;
      failures += this.#failures[i]!;
    }
    return { calls, failures };
  }

  reset(): void {
    this.#index.fill(-1);
  }
}
