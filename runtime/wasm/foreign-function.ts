/** weft's extension point for plugins: host services reachable through `proxy_call_foreign_function`, answered at once or later via `proxy_on_foreign_function`. */

/** Who is calling: enough for a service to key its state and attribute metrics. */
export interface ForeignCallContext {
  pluginName: string;
  /** The proxy-wasm context id of the calling stream (or root) context. */
  contextId: number;
}

/**
 * A host service callable from Wasm. `args` is the raw byte payload the plugin passed; the result is the
 * raw byte payload it reads back. A synchronous result is returned from `proxy_call_foreign_function`
 * directly; a Promise makes the host return WasmResult.Ok with an empty result and deliver the bytes
 * later through `proxy_on_foreign_function(root_context_id, function_id, data_size)`.
 */
export type ForeignFunction = (args: Uint8Array, ctx: ForeignCallContext) => Uint8Array | Promise<Uint8Array>;

/**
 * A ForeignFunction that reads its payload in place: `args[at, at + len)` of the guest's memory, valid only during the
 * call (no copy per call). It must read everything it needs before returning, and must not call into the guest.
 */
export type InPlaceForeignFunction = (args: Uint8Array, at: number, len: number, pluginName: string, contextId: number) => Uint8Array | Promise<Uint8Array>;

export interface ForeignFunctionEntry {
  readonly id: number;
  readonly fn: ForeignFunction;
  /** Set when registered with registerInPlace; `fn` then copies and calls it. */
  readonly inPlace?: InPlaceForeignFunction | undefined;
}

export class ForeignFunctionRegistry {
  readonly #functions = new Map<string, ForeignFunctionEntry>();
  #nextId = 1;

  /** Registers `name` (e.g. `weft.ratelimit.should_rate_limit`); the id is what `proxy_on_foreign_function` reports. */
  register(name: string, fn: ForeignFunction): number {
    return this.#add(name, fn, undefined);
  }

  /** register() for a function that reads the guest's bytes where they are (the hot rate-limit call). */
  registerInPlace(name: string, inPlace: InPlaceForeignFunction): number {
    return this.#add(name, (args, ctx) => inPlace(args, 0, args.length, ctx.pluginName, ctx.contextId), inPlace);
  }

  #add(name: string, fn: ForeignFunction, inPlace: InPlaceForeignFunction | undefined): number {
    const existing = this.#functions.get(name);
    const id = existing?.id ?? this.#nextId++;
    this.#functions.set(name, { id, fn, inPlace });
    return id;
  }

  lookup(name: string): ForeignFunctionEntry | undefined {
    return this.#functions.get(name);
  }

  names(): string[] {
    return [...this.#functions.keys()];
  }
}
