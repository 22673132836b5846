/**
 * The proxy-wasm callbacks a module exports, looked up once per VM and each held with exactly the arity the spec gives
 * its slot, so every call site passes exactly as many arguments as the function takes.
 *
 * Why exact: V8 calls a Wasm export through a wrapper compiled for its signature; a call with another argument count
 * than the export declares takes a slower generic path (measured on Node 24: about 5 ns more per call, six calls per
 * request). A module whose export declares other parameters than its slot (ABI 0.1.0's two-parameter header callbacks,
 * TinyGo SDKs that export three under a 0.1.0 marker) is called through a small adapter that passes the first
 * arguments it declares, which is what it saw before from a host that passed them all.
 */

export type Guest0 = () => number;
export type Guest1 = (a: number) => number;
export type Guest2 = (a: number, b: number) => number;
export type Guest3 = (a: number, b: number, c: number) => number;
export type Guest5 = (a: number, b: number, c: number, d: number, e: number) => number;

export interface Callbacks {
  onContextCreate?: Guest2;
  onVmStart?: Guest2;
  onConfigure?: Guest2;
  onTick?: Guest1;
  onRequestHeaders?: Guest3;
  onRequestBody?: Guest3;
  onRequestTrailers?: Guest2;
  onResponseHeaders?: Guest3;
  onResponseBody?: Guest3;
  onResponseTrailers?: Guest2;
  onHttpCallResponse?: Guest5;
  onGrpcReceiveInitialMetadata?: Guest3;
  onGrpcReceive?: Guest3;
  onGrpcReceiveTrailingMetadata?: Guest3;
  onGrpcClose?: Guest3;
  onQueueReady?: Guest2;
  onForeignFunction?: Guest3;
  onDone?: Guest1;
  onLog?: Guest1;
  onDelete?: Guest1;
}

/** Each slot's export name and its parameter count in ABI 0.2.x (proxy-wasm spec, abi-versions/v0.2.1). */
export const CALLBACK_EXPORTS: Readonly<Record<keyof Callbacks, readonly [name: string, arity: number]>> = {
  onContextCreate: ['proxy_on_context_create', 2],
  onVmStart: ['proxy_on_vm_start', 2],
  onConfigure: ['proxy_on_configure', 2],
  onTick: ['proxy_on_tick', 1],
  onRequestHeaders: ['proxy_on_request_headers', 3],
  onRequestBody: ['proxy_on_request_body', 3],
  onRequestTrailers: ['proxy_on_request_trailers', 2],
  onResponseHeaders: ['proxy_on_response_headers', 3],
  onResponseBody: ['proxy_on_response_body', 3],
  onResponseTrailers: ['proxy_on_response_trailers', 2],
  onHttpCallResponse: ['proxy_on_http_call_response', 5],
  onGrpcReceiveInitialMetadata: ['proxy_on_grpc_receive_initial_metadata', 3],
  onGrpcReceive: ['proxy_on_grpc_receive', 3],
  onGrpcReceiveTrailingMetadata: ['proxy_on_grpc_receive_trailing_metadata', 3],
  onGrpcClose: ['proxy_on_grpc_close', 3],
  onQueueReady: ['proxy_on_queue_ready', 2],
  onForeignFunction: ['proxy_on_foreign_function', 3],
  onDone: ['proxy_on_done', 1],
  onLog: ['proxy_on_log', 1],
  onDelete: ['proxy_on_delete', 1],
};

/** AssemblyScript SDKs export the trailing-metadata callback under a stale name from the C++ SDK's header. */
const AS_TRAILING_METADATA = 'proxy_on_grpc_trailing_metadata';

type AnyFn = (...args: number[]) => number;

/** The callbacks `exports` has, each callable with exactly its slot's arguments. */
export function bindCallbacks(exports: WebAssembly.Exports): Callbacks {
  const cb: Record<string, AnyFn> = {};
  for (const key of Object.keys(CALLBACK_EXPORTS) as (keyof Callbacks)[]) {
    const [name, arity] = CALLBACK_EXPORTS[key];
    let fn = exports[name];
    if (typeof fn !== 'function' && key === 'onGrpcReceiveTrailingMetadata') fn = exports[AS_TRAILING_METADATA];
    if (typeof fn === 'function') cb[key] = exactArity(fn as AnyFn, arity);
  }
  return cb;
}

/** `fn` itself when it takes `arity` parameters, else an adapter that calls it with the first ones it declares. */
export function exactArity(fn: AnyFn, arity: number): AnyFn {
  const declared = fn.length;
  if (declared === arity) return fn;
  switch (declared) {
    case 0:
      return () => fn();
    case 1:
      return (a) => fn(a);
    case 2:
      return (a, b) => fn(a, b);
    case 3:
      return (a, b, c) => fn(a, b, c);
    case 4:
      return (a, b, c, d) => fn(a, b, c, d);
    default:
      return (a, b, c, d, e) => fn(a, b, c, d, e);
  }
}
