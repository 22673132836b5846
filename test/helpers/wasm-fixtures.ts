// Builds proxy-wasm test modules: hand-written WAT fixtures (test/fixtures/wasm) assembled with wabt, and a generated
// "probe" plugin that exposes every hostcall as an export and records every callback into its memory.
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { sep, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import wabtInit from 'wabt';
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import { HOSTCALL_SIGNATURES } from '../../runtime/wasm/host-functions/host-imports.js';

// Compiled helpers run from dist/test/helpers (npm run bench); the .wat sources stay in test/fixtures.
const FIXTURES = fileURLToPath(new URL('../fixtures/wasm/', import.meta.url)).replace(`${sep}dist${sep}test${sep}`, `${sep}test${sep}`);
let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

export async function wat(text: string, name = 'module.wat'): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat(name, text, { exceptions: true, bulk_memory: true, mutable_globals: true, sign_extension: true, simd: true, multi_value: true });
  try {
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** Memory (3 pages; record area at 64 KiB, heap from 128 KiB), a bump allocator exported as malloc, and $record. */
export const PRELUDE = `
  (memory (export "memory") 3)
  (global $heap (mut i32) (i32.const 131072))
  (global $rec (mut i32) (i32.const 65536))
  (func $malloc (export "malloc") (param $n i32) (result i32) (local $p i32) (local $need i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.set $need (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $need) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then (return (i32.const 0))))))
    (local.get $p))
  (func $record (param $code i32) (param $a i32) (param $b i32) (param $c i32)
    (i32.store (global.get $rec) (local.get $code))
    (i32.store offset=4 (global.get $rec) (local.get $a))
    (i32.store offset=8 (global.get $rec) (local.get $b))
    (i32.store offset=12 (global.get $rec) (local.get $c))
    (global.set $rec (i32.add (global.get $rec) (i32.const 16))))
  (func (export "rec_end") (result i32) (global.get $rec))
`;

/** A fixture file with `(;PRELUDE;)` replaced by PRELUDE and `(;ABI;)` by the marker export of `abi`. */
export async function fixture(name: string, abi = '0_2_1'): Promise<Uint8Array> {
  const text = readFileSync(join(FIXTURES, `${name}.wat`), 'utf8')
    .replace('(;PRELUDE;)', PRELUDE)
    .replace('(;ABI;)', `(func (export "proxy_abi_version_${abi}"))`);
  return wat(text, `${name}.wat`);
}

/** Callback codes the probe records (entry = code, a, b, c as four i32 at 64 KiB + 16 n). */
export const Cb = {
  contextCreate: 0, vmStart: 1, configure: 2, requestHeaders: 3, requestBody: 4, requestTrailers: 5, responseHeaders: 6,
  responseBody: 7, responseTrailers: 8, done: 9, log: 10, delete: 11, tick: 12, queueReady: 13, httpCallResponse: 14,
  foreignFunction: 15, grpcInitialMetadata: 16, grpcReceive: 17, grpcTrailingMetadata: 18, grpcClose: 19, initialize: 20,
} as const;

/**
 * The probe plugin. Exports `call_<hostcall>` trampolines for every hostcall; records each callback; returns, per
 * callback, the digit at that position of its plugin configuration (positions: 0 request headers, 1 request body,
 * 2 request trailers, 3 response headers, 4 response body, 5 response trailers, 6 on_done, 8 on_configure).
 * Data only visible inside a callback is copied out: http call response body/headers to the (ptr,len) words at
 * 24/28 and 32/36, foreign-function result at 40/44, gRPC message at 48/52, dequeued item at 56/60, gRPC initial
 * metadata at 64/68.
 */
export async function probeModule(abi = '0_2_1'): Promise<Uint8Array> {
  const imports: string[] = [];
  const trampolines: string[] = [];
  for (const [name, sig] of Object.entries(HOSTCALL_SIGNATURES)) {
    const params = [...sig].map((c) => (c === 'I' ? 'i64' : 'i32'));
    const decl = params.length === 0 ? '' : `(param ${params.join(' ')})`;
    imports.push(`(import "env" "${name}" (func $${name} ${decl} (result i32)))`);
    const gets = params.map((_, i) => `(local.get ${i})`).join(' ');
    trampolines.push(`(func (export "call_${name}") ${decl} (result i32) (call $${name} ${gets}))`);
  }
  const cb = (exp: string, code: number, params: number, ret: string | undefined, extra = ''): string => {
    const ps = Array.from({ length: params }, () => 'i32');
    const args = [0, 1, 2].map((i) => (i < params ? `(local.get ${i})` : '(i32.const 0)')).join(' ');
    return `(func (export "${exp}") ${ps.length > 0 ? `(param ${ps.join(' ')})` : ''} ${ret === undefined ? '' : '(result i32)'}
      (call $record (i32.const ${code}) ${args}) ${extra} ${ret ?? ''})`;
  };
  const text = `(module
    ${imports.join('\n')}
    ${PRELUDE}
    (func (export "proxy_abi_version_${abi}"))
    (global $cfg (mut i32) (i32.const 0))
    (global $cfglen (mut i32) (i32.const 0))
    (func $ret (param $idx i32) (param $default i32) (result i32)
      (if (result i32) (i32.lt_u (local.get $idx) (global.get $cfglen))
        (then (i32.sub (i32.load8_u (i32.add (global.get $cfg) (local.get $idx))) (i32.const 48)))
        (else (local.get $default))))
    ${trampolines.join('\n')}
    (func (export "_initialize") (call $record (i32.const ${Cb.initialize}) (i32.const 0) (i32.const 0) (i32.const 0)))
    ${cb('proxy_on_context_create', Cb.contextCreate, 2, undefined)}
    ${cb('proxy_on_vm_start', Cb.vmStart, 2, '(i32.const 1)')}
    ${cb('proxy_on_configure', Cb.configure, 2, '(call $ret (i32.const 8) (i32.const 1))', `
      (drop (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 16) (i32.const 20)))
      (global.set $cfg (i32.load (i32.const 16))) (global.set $cfglen (i32.load (i32.const 20)))`)}
    ${cb('proxy_on_request_headers', Cb.requestHeaders, 3, '(call $ret (i32.const 0) (i32.const 0))')}
    ${cb('proxy_on_request_body', Cb.requestBody, 3, '(call $ret (i32.const 1) (i32.const 0))')}
    ${cb('proxy_on_request_trailers', Cb.requestTrailers, 2, '(call $ret (i32.const 2) (i32.const 0))')}
    ${cb('proxy_on_response_headers', Cb.responseHeaders, 3, '(call $ret (i32.const 3) (i32.const 0))')}
    ${cb('proxy_on_response_body', Cb.responseBody, 3, '(call $ret (i32.const 4) (i32.const 0))')}
    ${cb('proxy_on_response_trailers', Cb.responseTrailers, 2, '(call $ret (i32.const 5) (i32.const 0))')}
    ${cb('proxy_on_done', Cb.done, 1, '(call $ret (i32.const 6) (i32.const 1))')}
    ${cb('proxy_on_log', Cb.log, 1, undefined)}
    ${cb('proxy_on_delete', Cb.delete, 1, undefined)}
    ${cb('proxy_on_tick', Cb.tick, 1, undefined)}
    ${cb('proxy_on_queue_ready', Cb.queueReady, 2, undefined, '(drop (call $proxy_dequeue_shared_queue (local.get 1) (i32.const 56) (i32.const 60)))')}
    (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
      (call $record (i32.const ${Cb.httpCallResponse}) (local.get 1) (local.get 2) (local.get 3))
      (drop (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (i32.const -1) (i32.const 24) (i32.const 28)))
      (drop (call $proxy_get_header_map_pairs (i32.const 6) (i32.const 32) (i32.const 36))))
    ${cb('proxy_on_foreign_function', Cb.foreignFunction, 3, undefined, '(drop (call $proxy_get_buffer_bytes (i32.const 8) (i32.const 0) (i32.const -1) (i32.const 40) (i32.const 44)))')}
    ${cb('proxy_on_grpc_receive_initial_metadata', Cb.grpcInitialMetadata, 3, undefined, '(drop (call $proxy_get_header_map_pairs (i32.const 4) (i32.const 64) (i32.const 68)))')}
    ${cb('proxy_on_grpc_receive', Cb.grpcReceive, 3, undefined, '(drop (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (i32.const -1) (i32.const 48) (i32.const 52)))')}
    ${cb('proxy_on_grpc_receive_trailing_metadata', Cb.grpcTrailingMetadata, 3, undefined)}
    ${cb('proxy_on_grpc_close', Cb.grpcClose, 3, undefined)}
  )`;
  return wat(text, `probe-${abi}.wat`);
}

/** Writes `bytes` to a fresh temp file and returns its file:// URL. */
export async function wasmFileUrl(bytes: Uint8Array, name = 'plugin.wasm'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-wasm-'));
  const path = join(dir, name);
  await writeFile(path, bytes);
  return pathToFileURL(path).href;
}

export function pluginConfig(name: string, url: string, extra: Partial<PluginConfig> = {}): PluginConfig {
  return { name, url, phase: 'UNSPECIFIED_PHASE', priority: 0, failStrategy: 'FAIL_CLOSE', ...extra };
}
