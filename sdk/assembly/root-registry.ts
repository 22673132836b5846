// Which RootContext class a plugin uses (registerRootContext) and every live context by id, for exports.ts.
import { Context, RootContext } from "./context";
import { getPropertyString } from "./properties";

export type RootFactory = (contextId: u32) => RootContext;

const names = new Array<string>();
const factories = new Array<RootFactory>();

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
  addContext(root);
  return root;
}

// Live contexts by id in flat storage: an open-addressed table (linear probing, ids as keys, 0 = empty slot; the host
// never uses id 0) instead of a Map, so a request's create/lookup/delete costs a few loads and no allocation once the
// table has grown to the number of concurrent streams. `last` answers the run of callbacks one context gets in a row.
let ids = new StaticArray<u32>(64);
let slots = new StaticArray<Context | null>(64);
let live: i32 = 0;
let lastId: u32 = 0;
let last: Context | null = null;

// @ts-ignore: decorator
@inline function slotOf(id: u32, mask: i32): i32 {
  // Fibonacci hashing spreads the host's consecutive ids.
  return <i32>((id * 0x9e3779b1) >>> 7) & mask;
}

function insert(ctx: Context): void {
  const mask = ids.length - 1;
  let i = slotOf(ctx.id, mask);
  while (true) {
    const k = unchecked(ids[i]);
    if (k == 0 || k == ctx.id) break;
    i = (i + 1) & mask;
  }
  if (unchecked(ids[i]) == 0) live++;
  unchecked((ids[i] = ctx.id));
  unchecked((slots[i] = ctx));
}

function grow(): void {
  const oldIds = ids;
  const oldSlots = slots;
  ids = new StaticArray<u32>(oldIds.length << 1);
  slots = new StaticArray<Context | null>(oldIds.length << 1);
  live = 0;
  for (let i = 0; i < oldIds.length; i++) {
    const c = unchecked(oldSlots[i]);
    if (unchecked(oldIds[i]) != 0 && c !== null) insert(c);
  }
}

export function addContext(ctx: Context): void {
  if ((live + 1) << 1 > ids.length) grow();
  insert(ctx);
  lastId = ctx.id;
  last = ctx;
}

export function getContext(id: u32): Context | null {
  if (id == lastId && id != 0) return last;
  const mask = ids.length - 1;
  let i = slotOf(id, mask);
  while (true) {
    const k = unchecked(ids[i]);
    if (k == 0) return null;
    if (k == id) {
      const c = unchecked(slots[i]);
      lastId = id;
      last = c;
      return c;
    }
    i = (i + 1) & mask;
  }
}

export function removeContext(id: u32): void {
  if (id == lastId) {
    lastId = 0;
    last = null;
  }
  const mask = ids.length - 1;
  let i = slotOf(id, mask);
  while (true) {
    const k = unchecked(ids[i]);
    if (k == 0) return;
    if (k == id) break;
    i = (i + 1) & mask;
  }
  // Backward-shift deletion keeps every probe run unbroken without tombstones.
  let j = i;
  while (true) {
    j = (j + 1) & mask;
    const k = unchecked(ids[j]);
    if (k == 0) break;
    const home = slotOf(k, mask);
    // Move k into the hole when its home slot is not cyclically within (i, j].
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      unchecked((ids[i] = k));
      unchecked((slots[i] = unchecked(slots[j])));
      i = j;
    }
  }
  unchecked((ids[i] = 0));
  unchecked((slots[i] = null));
  live--;
}
