/** Waits for the first collected log line that matches, as lines arrive: one mechanism for in-process and spawned weft harnesses. */
export class LineWaiters<T> {
  readonly #waiters = new Set<() => void>();

  constructor(readonly lines: T[]) {}

  /** Call after lines were appended: wakes every pending wait. */
  notify(): void {
    for (const w of this.#waiters) w();
  }

  /**
   * The first line (already seen or still to come) that satisfies `pred`; rejects after `timeoutMs` with `describe()`,
   * or once `abandoned` settles (with the message it gives) if no line matched by then.
   */
  waitFor(pred: (line: T) => boolean, timeoutMs: number, describe: () => string, abandoned?: Promise<string>): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        this.#waiters.delete(check);
        clearTimeout(timer);
      };
      const check = (): void => {
        const hit = this.lines.find(pred);
        if (hit === undefined) return;
        finish();
        resolve(hit);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(describe()));
      }, timeoutMs);
      this.#waiters.add(check);
      void abandoned?.then((message) => {
        if (!this.#waiters.has(check)) return;
        finish();
        reject(new Error(message));
      });
      check();
    });
  }
}
