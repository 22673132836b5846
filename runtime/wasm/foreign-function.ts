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

export class ForeignFunctionRegistry {
  readonly #functions = new Map<string, { id: number; fn: ForeignFunction }>();
  #nextId = 1;

  /** Registers `name` (e.g. `weft.ratelimit.should_rate_limit`); the id is what `proxy_on_foreign_function` reports. */
  register(name: string, fn: ForeignFunction): number {
    const existing = this.#functions.get(name);
    const id = existing?.id ?? this.#nextId++;
    this.#functions.set(name, { id, fn });
    return id;
  }

  lookup(name: string): { id: number; fn: ForeignFunction } | undefined {
    return this.#functions.get(name);
  }

  names(): string[] {
    return [...this.#functions.keys()];
  }
}
