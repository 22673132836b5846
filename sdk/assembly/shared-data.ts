// Node-wide shared data (key → bytes with compare-and-swap) and shared queues, scoped by the plugin's vm_id, plus
// SharedCounter: an exact per-node counter built on CAS. (Cluster-wide limits belong to the rate limiter, weft.ts.)
import { WasmResult } from "./abi-enums";
import {
  proxy_dequeue_shared_queue, proxy_enqueue_shared_queue, proxy_get_shared_data, proxy_register_shared_queue,
  proxy_resolve_shared_queue, proxy_set_shared_data,
} from "./imports";
import { clearOut, outLen, outPtr, outWord, takeOutBytes, utf8 } from "./memory";
import { BytesResult, HostResult, U32Result, U64Result } from "./result";

export class SharedDataResult extends HostResult {
  constructor(status: WasmResult, public readonly value: ArrayBuffer, public readonly cas: u32) {
    super(status);
  }
}

/** The value and its CAS version; NotFound when the key was never set. */
export function getSharedData(key: string): SharedDataResult {
  const k = utf8(key);
  clearOut();
  const st = <WasmResult>proxy_get_shared_data(changetype<usize>(k), k.byteLength, outPtr(), outLen(), outWord());
  if (st != WasmResult.Ok) return new SharedDataResult(st, new ArrayBuffer(0), 0);
  const cas = load<u32>(outWord());
  return new SharedDataResult(st, takeOutBytes(), cas);
}

/** Sets `key`; with `cas` != 0 only if the stored version still is `cas` (else CasMismatch). */
export function setSharedData(key: string, value: ArrayBuffer, cas: u32 = 0): WasmResult {
  const k = utf8(key);
  return <WasmResult>proxy_set_shared_data(changetype<usize>(k), k.byteLength, changetype<usize>(value), value.byteLength, cas);
}

/** Creates (or opens) this plugin's queue `name`; the token also identifies it in onQueueReady. */
export function registerSharedQueue(name: string): U32Result {
  const n = utf8(name);
  const st = <WasmResult>proxy_register_shared_queue(changetype<usize>(n), n.byteLength, outWord());
  return new U32Result(st, st == WasmResult.Ok ? load<u32>(outWord()) : 0);
}

/** Finds queue `name` of VM `vmId` ("" for this plugin's own); NotFound when nobody registered it. */
export function resolveSharedQueue(vmId: string, name: string): U32Result {
  const v = utf8(vmId);
  const n = utf8(name);
  const st = <WasmResult>proxy_resolve_shared_queue(changetype<usize>(v), v.byteLength, changetype<usize>(n), n.byteLength, outWord());
  return new U32Result(st, st == WasmResult.Ok ? load<u32>(outWord()) : 0);
}

export function enqueueSharedQueue(token: u32, value: ArrayBuffer): WasmResult {
  return <WasmResult>proxy_enqueue_shared_queue(token, changetype<usize>(value), value.byteLength);
}

/** The oldest item; Empty when there is none. */
export function dequeueSharedQueue(token: u32): BytesResult {
  clearOut();
  const st = <WasmResult>proxy_dequeue_shared_queue(token, outPtr(), outLen());
  if (st != WasmResult.Ok) return new BytesResult(st, new ArrayBuffer(0));
  return new BytesResult(st, takeOutBytes());
}

const CAS_ATTEMPTS = 16;

/**
 * A u64 counter in shared data, exact across every VM of this plugin on the node (CAS retried on contention).
 *
 * @example
 *   const seen = new SharedCounter("requests");
 *   const n = seen.add(1);
 *   if (n.ok && n.value % 1000 == 0) logInfo("seen " + n.value.toString());
 */
export class SharedCounter {
  constructor(public readonly key: string) {}

  /** Adds `delta` and answers the new value; CasMismatch if contention outlasted the retries. */
  add(delta: u64): U64Result {
    for (let i = 0; i < CAS_ATTEMPTS; i++) {
      const cur = getSharedData(this.key);
      let value: u64 = 0;
      let cas: u32 = 0;
      if (cur.ok) {
        if (cur.value.byteLength != 8) return new U64Result(WasmResult.SerializationFailure, 0);
        value = load<u64>(changetype<usize>(cur.value));
        cas = cur.cas;
      } else if (cur.status != WasmResult.NotFound) return new U64Result(cur.status, 0);
      const next = value + delta;
      const buf = new ArrayBuffer(8);
      store<u64>(changetype<usize>(buf), next);
      const st = setSharedData(this.key, buf, cas);
      if (st == WasmResult.Ok) return new U64Result(st, next);
      if (st != WasmResult.CasMismatch) return new U64Result(st, 0);
    }
    return new U64Result(WasmResult.CasMismatch, 0);
  }

  get(): U64Result {
    const cur = getSharedData(this.key);
    if (!cur.ok) return new U64Result(cur.status == WasmResult.NotFound ? WasmResult.Ok : cur.status, 0);
    if (cur.value.byteLength != 8) return new U64Result(WasmResult.SerializationFailure, 0);
    return new U64Result(WasmResult.Ok, load<u64>(changetype<usize>(cur.value)));
  }
}
