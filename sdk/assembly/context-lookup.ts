// What the exports need to dispatch a callback: the context by id (typed), the effective-context bookkeeping, and when
// garbage is collected. Kept out of the exports modules so nothing here becomes a Wasm export of the plugin.
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

// The SDK builds with AssemblyScript's minimal runtime: its collector never runs by itself and does not scan the Wasm
// stack, so it may only run when no callback is in progress (depth 0, the host about to get control back). A request
// leaves a little garbage (its context, strings it read); collecting every COLLECT_EVERY finished units of work (a
// deleted context, a tick, a callout answer) keeps the heap flat at a cost spread over many requests, instead of the
// incremental collector's bookkeeping on every allocation.
const COLLECT_EVERY: i32 = 64;
let depth: i32 = 0;
let units: i32 = 0;

/** A callback for context `id` starts: host calls act on it. */
export function enter(id: u32): void {
  depth++;
  setEffectiveId(id);
}

/** The callback returns. */
export function leave(): void {
  depth--;
}

/** The callback that finished a unit of work (a stream, a tick, a callout) returns. */
export function leaveUnit(): void {
  depth--;
  if (++units >= COLLECT_EVERY && depth == 0) collect();
}

/** A callback that leaves much garbage at once (configuration parsing) returns. */
export function leaveAndCollect(): void {
  depth--;
  if (depth == 0) collect();
}

function collect(): void {
  units = 0;
  __collect();
}
