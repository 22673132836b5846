/**
 * Increments of a prom-client counter's label sets kept in plain numbers and handed to prom-client when the counter is
 * read (a scrape, `get()`): prom-client hashes the label object on every `inc`, a child from `labels()` included, which
 * costs more than the decision it counts on a hot path. One batch per counter, shared by everyone counting into it.
 */
import type { Counter } from 'prom-client';

/** One label set's pending increments. */
export interface BatchedSeries {
  inc(): void;
}

class Series implements BatchedSeries {
  pending = 0;
  constructor(readonly labels: Record<string, string>) {}

  inc(): void {
    this.pending++;
  }
}

const batches = new WeakMap<object, BatchedCounter>();

export class BatchedCounter {
  readonly #counter: Counter;
  /** By label values in label-name order: asking twice for one label set gives one series. */
  readonly #series = new Map<string, Series>();

  private constructor(counter: Counter) {
    this.#counter = counter;
    // prom-client calls collect() (a documented constructor option, absent from its Counter type) before reading the
    // values, for the text exposition and for get() alike.
    const target = counter as unknown as { collect?: () => unknown };
    const previous = target.collect;
    target.collect = () => {
      this.flush();
      return previous?.call(counter);
    };
  }

  /** The batch of `counter`, created on first use. */
  static of<L extends string>(counter: Counter<L>): BatchedCounter {
    let b = batches.get(counter);
    if (b === undefined) batches.set(counter, (b = new BatchedCounter(counter)));
    return b;
  }

  /** A handle counting into `labels`; keep it, a new one per increment would defeat the purpose. */
  series(labels: Record<string, string>): BatchedSeries {
    const key = Object.keys(labels)
      .sort()
      .map((k) => `${k}\u0000${labels[k]}`)
      .join('\u0001');
    let s = this.#series.get(key);
    if (s === undefined) this.#series.set(key, (s = new Series(labels)));
    return s;
  }

  /** Moves the pending increments into prom-client. */
  flush(): void {
    for (const s of this.#series.values()) {
      if (s.pending === 0) continue;
      this.#counter.inc(s.labels, s.pending);
      s.pending = 0;
    }
  }
}
