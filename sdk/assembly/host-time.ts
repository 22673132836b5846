// Wall-clock time and randomness from the host (proxy_get_current_time_nanoseconds, WASI random_get), so plugins
// never need AssemblyScript's Math.random seed import (`env.seed`), which proxy-wasm hosts do not provide.
import { WasmResult } from "./abi-enums";
import { proxy_get_current_time_nanoseconds, random_get } from "./imports";
import { outWord } from "./memory";

/** Nanoseconds since the Unix epoch; 0 if the host refused. */
export function currentTimeNanos(): u64 {
  return proxy_get_current_time_nanoseconds(outWord()) == WasmResult.Ok ? load<u64>(outWord()) : 0;
}

/** Seconds since the Unix epoch. */
export function currentTimeSeconds(): u64 {
  return currentTimeNanos() / 1_000_000_000;
}

/** A uniformly random u32 from the host's CSPRNG. */
export function randomU32(): u32 {
  random_get(outWord(), 4);
  return load<u32>(outWord());
}

/** A uniformly random f64 in [0, 1). */
export function randomUnit(): f64 {
  return <f64>randomU32() / 4294967296.0;
}
