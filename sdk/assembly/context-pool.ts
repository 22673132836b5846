// Request contexts recycled from deleted streams to new ones: a plugin that keeps nothing of a request past its
// proxy_on_delete gives the context back in onDelete and takes it again in newHttpContext, so a request allocates no
// context object (and leaves the collector none to sweep), as a C++ or Rust filter reuses its stream state.
import { Context, HttpContext } from "./context";

/** Deleted contexts kept for new streams: as many as were live at once, up to this many. */
const DEFAULT_KEEP: i32 = 256;

/**
 * Deleted contexts of one plugin, renumbered to the next stream's id when taken. A taken context still holds the state
 * its last request left: reset every per-request field before using it.
 *
 * @example
 *   class MyRoot extends RootContext {
 *     pool: ContextPool<MyContext> = new ContextPool<MyContext>();
 *     newHttpContext(id: u32): HttpContext {
 *       const c = this.pool.take(id);
 *       if (c === null) return new MyContext(id, this);
 *       c!.reset();
 *       return c!;
 *     }
 *   }
 *   // in MyContext: onDelete(): void { this.myRoot.pool.give(this); }
 */
export class ContextPool<T extends HttpContext> {
  private free: Array<T> = new Array<T>();

  constructor(public readonly keep: i32 = DEFAULT_KEEP) {}

  /** A deleted context now numbered `id`, or null when none is kept. */
  take(id: u32): T | null {
    if (this.free.length == 0) return null;
    const c = this.free.pop();
    // Context.id is readonly to plugins: a context keeps its id for its whole stream. A recycled one starts a new
    // stream, and the SDK registers it under the id it reads here after newHttpContext returns.
    store<u32>(changetype<usize>(c), id, offsetof<Context>("id"));
    return c;
  }

  /**
   * Keeps `ctx` for a later stream. Call it from the context's onDelete (the SDK forgets the context right after) and
   * only when nothing else (a pending callout's waiter list, a timer list) still refers to it.
   */
  give(ctx: T): void {
    if (this.free.length < this.keep) this.free.push(ctx);
  }

  /** How many deleted contexts are kept. */
  get size(): i32 {
    return this.free.length;
  }
}
