// What the exports need to dispatch a callback: the context by id (typed) and the effective-context bookkeeping.
// Kept out of the exports modules so nothing here becomes a Wasm export of the plugin.
import { HttpContext, RootContext, setEffectiveId } from "./context";
import { getContext } from "./root-registry";

export function rootContextOf(id: u32): RootContext | null {
  const c = getContext(id);
  return c !== null && c instanceof RootContext ? <RootContext>c : null;
}

export function httpContextOf(id: u32): HttpContext | null {
  const c = getContext(id);
  return c !== null && c instanceof HttpContext ? <HttpContext>c : null;
}

/** A callback for context `id` starts: host calls act on it. */
export function enter(id: u32): void {
  setEffectiveId(id);
}
