// Which RootContext class a plugin uses (registerRootContext) and every live context by id, for exports.ts.
import { Context, RootContext } from "./context";
import { getPropertyString } from "./properties";

export type RootFactory = (contextId: u32) => RootContext;

const names = new Array<string>();
const factories = new Array<RootFactory>();
const contexts = new Map<u32, Context>();

function passThroughRoot(id: u32): RootContext {
  return new RootContext(id);
}

/**
 * Declares the plugin's root context. `rootId` selects among several by the host's plugin_root_id (weft: the plugin's
 * configured name); "" (the default) serves any root id without a specific registration.
 *
 * @example
 *   registerRootContext((id: u32): RootContext => new MyRoot(id));
 */
export function registerRootContext(factory: RootFactory, rootId: string = ""): void {
  names.push(rootId);
  factories.push(factory);
}

export function createRoot(id: u32): RootContext {
  let fallback: i32 = -1;
  let chosen: i32 = -1;
  if (factories.length == 1 && names[0].length == 0) chosen = 0;
  else {
    const rootId = getPropertyString("plugin_root_id");
    for (let i = 0; i < names.length; i++) {
      if (names[i].length == 0) fallback = i;
      else if (rootId.ok && names[i] == rootId.value) chosen = i;
    }
    if (chosen < 0) chosen = fallback;
  }
  const root = chosen < 0 ? passThroughRoot(id) : factories[chosen](id);
  contexts.set(id, root);
  return root;
}

export function addContext(ctx: Context): void {
  contexts.set(ctx.id, ctx);
}

export function getContext(id: u32): Context | null {
  return contexts.has(id) ? contexts.get(id) : null;
}

export function removeContext(id: u32): void {
  contexts.delete(id);
}
