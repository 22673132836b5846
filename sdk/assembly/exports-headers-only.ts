// The guest entry points the host calls (proxy-wasm 0.2.1 names) except the body and trailer callbacks, doing nothing
// but dispatch to context objects. A header-only plugin re-exports this module instead of exports.ts
// (`export * from "@weft/sdk/assembly/exports-headers-only";`): hosts then never route bodies or trailers through
// it — weft's L7 path streams them instead of buffering whole bodies for a plugin that would not look at them.
import { HeadersAction } from "./abi-enums";
import { Context, HttpContext, RootContext } from "./context";
import { enter, httpContextOf, leave, leaveAndCollect, leaveUnit, rootContextOf } from "./context-lookup";
import { runForeignResult, runForget, runHttpCallResponse } from "./dispatch-hooks";
import { allocateForHost } from "./memory";
import { addContext, createRoot, getContext, removeContext } from "./root-registry";

/** ABI marker: hosts look for this export to pick the ABI version. */
export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_memory_allocate(size: usize): usize {
  return allocateForHost(size);
}

/** Older hosts (and cpp-host, which prefers it) call malloc. */
export function malloc(size: usize): usize {
  return allocateForHost(size);
}

export function proxy_on_context_create(contextId: u32, parentId: u32): void {
  enter(contextId);
  if (parentId == 0) createRoot(contextId);
  else {
    let r = rootContextOf(parentId);
    if (r === null) r = createRoot(parentId);
    addContext(r.newHttpContext(contextId));
  }
  leave();
}

export function proxy_on_vm_start(rootId: u32, vmConfigurationSize: u32): bool {
  enter(rootId);
  const r = rootContextOf(rootId);
  const ok = r === null ? true : r.onVmStart(vmConfigurationSize);
  leaveAndCollect();
  return ok;
}

export function proxy_on_configure(rootId: u32, configurationSize: u32): bool {
  enter(rootId);
  const r = rootContextOf(rootId);
  const ok = r === null ? true : r.onConfigure(configurationSize);
  // Parsing the configuration leaves its whole JSON tree behind: collect it now, not 64 requests later.
  leaveAndCollect();
  return ok;
}

export function proxy_on_tick(rootId: u32): void {
  enter(rootId);
  const r = rootContextOf(rootId);
  if (r !== null) r.onTick();
  leaveUnit();
}

export function proxy_on_queue_ready(rootId: u32, queueId: u32): void {
  enter(rootId);
  const r = rootContextOf(rootId);
  if (r !== null) r.onQueueReady(queueId);
  leaveUnit();
}

export function proxy_on_request_headers(id: u32, headerCount: u32, endOfStream: bool): HeadersAction {
  enter(id);
  const c = httpContextOf(id);
  const a = c === null ? HeadersAction.Continue : c.onRequestHeaders(headerCount, endOfStream);
  leave();
  return a;
}

export function proxy_on_response_headers(id: u32, headerCount: u32, endOfStream: bool): HeadersAction {
  enter(id);
  const c = httpContextOf(id);
  const a = c === null ? HeadersAction.Continue : c.onResponseHeaders(headerCount, endOfStream);
  leave();
  return a;
}

export function proxy_on_http_call_response(rootId: u32, token: u32, headerCount: u32, bodySize: u32, trailerCount: u32): void {
  enter(rootId);
  runHttpCallResponse(token, headerCount, bodySize, trailerCount);
  leaveUnit();
}

export function proxy_on_foreign_function(rootId: u32, functionId: u32, argumentsSize: u32): void {
  enter(rootId);
  runForeignResult(functionId, argumentsSize);
  leaveUnit();
}

export function proxy_on_done(id: u32): bool {
  enter(id);
  const c = getContext(id);
  let done = true;
  if (c !== null) {
    if (c instanceof HttpContext) done = (<HttpContext>c).onDone();
    else if (c instanceof RootContext) done = (<RootContext>c).onDone();
  }
  leave();
  return done;
}

export function proxy_on_log(id: u32): void {
  enter(id);
  const c = httpContextOf(id);
  if (c !== null) c.onLog();
  leave();
}

export function proxy_on_delete(id: u32): void {
  enter(id);
  const c: Context | null = getContext(id);
  if (c !== null) {
    runForget(c);
    c.onDelete();
    removeContext(id);
  }
  leaveUnit();
}
