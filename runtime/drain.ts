/** Graceful drain: listeners stop accepting when the signal aborts, tracked connections get until the deadline to finish, then are destroyed. */

/** Time destroyed connections get to unwind (close events, access log) before drain returns. */
const FORCED_UNWIND_MS = 1_000;

/**
 * At the deadline a connection ends in order (FIN, END_STREAM, `connection: close`'s FIN) and its peer gets this long
 * to end its side before it is destroyed; shorter than FORCED_UNWIND_MS, so the drain sees it end.
 */
export const DRAIN_CLOSE_GRACE_MS = 300;

export interface Drainable {
  /** Ends the connection now (the deadline passed). */
  destroy(): void;
}

export class Drain {
  readonly #controller = new AbortController();
  readonly #active = new Set<Drainable>();
  #idle: (() => void) | undefined;

  /** Aborted when draining starts; every accept loop watches it. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get draining(): boolean {
    return this.#controller.signal.aborted;
  }

  get activeCount(): number {
    return this.#active.size;
  }

  /** Tracks one connection until the returned release function is called (idempotent). */
  track(conn: Drainable): () => void {
    this.#active.add(conn);
    return () => {
      if (this.#active.delete(conn) && this.#active.size === 0) this.#idle?.();
    };
  }

  /** Starts draining; resolves once every tracked connection closed or `deadlineMs` passed (remaining ones are destroyed). */
  async drain(deadlineMs: number): Promise<{ forced: number }> {
    if (!this.#controller.signal.aborted) this.#controller.abort(new Error('draining'));
    if (await this.#waitIdle(deadlineMs)) return { forced: 0 };
    const forced = this.#active.size;
    for (const conn of [...this.#active]) conn.destroy();
    // Destroyed connections still write their access-log line and metrics as they unwind; let them.
    await this.#waitIdle(FORCED_UNWIND_MS);
    return { forced };
  }

  async #waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.#active.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        new Promise<boolean>((resolve) => (this.#idle = () => resolve(true))),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
    } finally {
      clearTimeout(timer);
      this.#idle = undefined;
    }
  }
}
