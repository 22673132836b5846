// The guest entry points the host calls (proxy-wasm 0.2.1 names), doing nothing but dispatch to context objects.
// A plugin re-exports this module from its entry file: `export * from "@weft/sdk/assembly/exports";`
import { DataAction, HeadersAction } from "./abi-enums";
import { Context, HttpContext, RootContext, setEffectiveId } from "./context";
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

function root(id: u32): RootContext | null {
  const c = getContext(id);
  return c !== null && c instanceof RootContext ? <RootContext>c : null;
}

function http(id: u32): HttpContext | null {
  const c = getContext(id);
  return c !== null && c instanceof HttpContext ? <HttpContext>c : null;
}

function enter(id: u32): void {
  setEffectiveId(id);
}

export function proxy_on_context_create(contextId: u32, parentId: u32): void {
  enter(contextId);
  if (parentId == 0) {
    createRoot(contextId);
    return;
  }
  let r = root(parentId);
  if (r === null) r = createRoot(parentId);
  addContext(r.newHttpContext(contextId));
}

export function proxy_on_vm_start(rootId: u32, vmConfigurationSize: u32): bool {
  enter(rootId);
  const r = root(rootId);
  return r === null ? true : r.onVmStart(vmConfigurationSize);
}

export function proxy_on_configure(rootId: u32, configurationSize: u32): bool {
  enter(rootId);
  const r = root(rootId);
  return r === null ? true : r.onConfigure(configurationSize);
}

export function proxy_on_tick(rootId: u32): void {
  enter(rootId);
  const r = root(rootId);
  if (r !== null) r.onTick();
}

export function proxy_on_queue_ready(rootId: u32, queueId: u32): void {
  enter(rootId);
  const r = root(rootId);
  if (r !== null) r.onQueueReady(queueId);
}

export function proxy_on_request_headers(id: u32, headerCount: u32, endOfStream: bool): HeadersAction {
  enter(id);
  const c = http(id);
  return c === null ? HeadersAction.Continue : c.onRequestHeaders(headerCount, endOfStream);
}

export function proxy_on_request_body(id: u32, bodySize: u32, endOfStream: bool): DataAction {
  enter(id);
  const c = http(id);
  return c === null ? DataAction.Continue : c.onRequestBody(bodySize, endOfStream);
}

export function proxy_on_request_trailers(id: u32, trailerCount: u32): HeadersAction {
  enter(id);
  const c = http(id);
  return c === null ? HeadersAction.Continue : c.onRequestTrailers(trailerCount);
}

export function proxy_on_response_headers(id: u32, headerCount: u32, endOfStream: bool): HeadersAction {
  enter(id);
  const c = http(id);
  return c === null ? HeadersAction.Continue : c.onResponseHeaders(headerCount, endOfStream);
}

export function proxy_on_response_body(id: u32, bodySize: u32, endOfStream: bool): DataAction {
  enter(id);
  const c = http(id);
  return c === null ? DataAction.Continue : c.onResponseBody(bodySize, endOfStream);
}

export function proxy_on_response_trailers(id: u32, trailerCount: u32): HeadersAction {
  enter(id);
  const c = http(id);
  return c === null ? HeadersAction.Continue : c.onResponseTrailers(trailerCount);
}

export function proxy_on_http_call_response(rootId: u32, token: u32, headerCount: u32, bodySize: u32, trailerCount: u32): void {
  enter(rootId);
  runHttpCallResponse(token, headerCount, bodySize, trailerCount);
}

export function proxy_on_foreign_function(rootId: u32, functionId: u32, argumentsSize: u32): void {
  enter(rootId);
  runForeignResult(functionId, argumentsSize);
}

export function proxy_on_done(id: u32): bool {
  enter(id);
  const c = getContext(id);
  if (c === null) return true;
  if (c instanceof HttpContext) return (<HttpContext>c).onDone();
  if (c instanceof RootContext) return (<RootContext>c).onDone();
  return true;
}

export function proxy_on_log(id: u32): void {
  enter(id);
  const c = http(id);
  if (c !== null) c.onLog();
}

export function proxy_on_delete(id: u32): void {
  enter(id);
  const c: Context | null = getContext(id);
  if (c === null) return;
  runForget(c!);
  c.onDelete();
  removeContext(id);
}
