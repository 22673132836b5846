// Guest callbacks: each held with exactly its slot's arity, each call site passing exactly that many arguments, and a
// callback a module does not export never called (nor anything prepared for it).
import { afterEach, describe, expect, it } from 'vitest';
import { Cb, PRELUDE, probeModule, wat } from '../../test/helpers/wasm-fixtures.js';
import { createTestHost, loadPlugin, records, type TestHost } from '../../test/helpers/wasm-host.js';
import { CALLBACK_EXPORTS, bindCallbacks, exactArity, type Callbacks } from './guest-callbacks.js';

let t: TestHost | undefined;
afterEach(() => t?.host.close());

/** A header map whose `length` reads are counted (a lazy map counts its source's fields on each read). */
function countingMap(pairs: [string, string][]): { map: [string, string][]; reads: () => number } {
  let reads = 0;
  const map = new Proxy(pairs, {
    get(target, key, receiver) {
      if (key === 'length') reads++;
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { map, reads: () => reads };
}

describe('exactArity', () => {
  it('keeps a function that takes its slot arguments, and adapts one that declares others to the ones it declares', () => {
    const three = (a: number, b: number, c: number): number => a + b + c;
    expect(exactArity(three, 3)).toBe(three);
    const seen: number[] = [];
    const two = function (this: unknown, ...args: number[]): number {
      seen.push(args.length);
      return args[0]! + args[1]!;
    };
    Object.defineProperty(two, 'length', { value: 2 });
    const adapted = exactArity(two, 3);
    expect(adapted).not.toBe(two);
    expect(adapted.length).toBe(2);
    expect(adapted(4, 5, 1)).toBe(9);
    expect(seen).toEqual([2]);
  });
});

describe('bindCallbacks', () => {
  it('binds every spec callback of a module to the export itself when it declares the spec arity', async () => {
    const probe = new WebAssembly.Instance(new WebAssembly.Module(await probeModule()), stubImports(await probeModule()));
    const cb = bindCallbacks(probe.exports);
    for (const [key, [name, arity]] of Object.entries(CALLBACK_EXPORTS)) {
      const fn = cb[key as keyof Callbacks];
      expect(fn, key).toBe(probe.exports[name]);
      expect(fn!.length, key).toBe(arity);
    }
  });

  it('runs an ABI 0.1.0 module whose header callbacks take two parameters through adapters', async () => {
    t = createTestHost();
    const bytes = await wat(`(module ${PRELUDE}
      (func (export "proxy_abi_version_0_1_0"))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
        (call $record (i32.const ${Cb.requestHeaders}) (local.get 0) (local.get 1) (i32.const 7)) (i32.const 0)))`);
    const vm = await loadPlugin(t, 'legacy', bytes);
    expect(vm.cb.onRequestHeaders!.length).toBe(2);
    const chain = t.host.createStream(['legacy']);
    expect(chain.onRequestHeaders([[':path', '/'], ['a', 'b']], true)).toEqual({ kind: 'continue' });
    chain.done();
    expect(records(vm)).toEqual([[Cb.requestHeaders, 2, 2, 7]]);
  });
});

describe('guest call sites', () => {
  it('call each stream and root callback with exactly the arguments of its slot', async () => {
    t = createTestHost();
    const vm = await loadPlugin(t, 'probe', await probeModule());
    const counts = new Map<string, number[]>();
    for (const key of Object.keys(CALLBACK_EXPORTS) as (keyof Callbacks)[]) {
      const real: ((...a: number[]) => number) | undefined = vm.cb[key];
      if (real === undefined) continue;
      // A JS stand-in sees how many arguments a call site passes, which a Wasm export cannot.
      (vm.cb as Record<string, unknown>)[key] = (...args: number[]): number => {
        counts.set(key, [...(counts.get(key) ?? []), args.length]);
        return real(...args);
      };
    }
    const chain = t.host.createStream(['probe']);
    chain.onRequestHeaders([[':method', 'POST']], false);
    chain.onRequestBody(Buffer.from('x'), false);
    chain.onRequestTrailers([['t', '1']]);
    chain.onResponseHeaders([[':status', '200']], false);
    chain.onResponseBody(Buffer.from('y'), false);
    chain.onResponseTrailers([['t', '2']]);
    chain.done();
    vm.deliverForeignResult(1, new Uint8Array(0));
    vm.queueReady(1);
    vm.deliverHttpCallResponse(1, undefined);
    for (const key of ['onContextCreate', 'onRequestHeaders', 'onRequestBody', 'onRequestTrailers', 'onResponseHeaders', 'onResponseBody', 'onResponseTrailers', 'onDone', 'onLog', 'onDelete', 'onForeignFunction', 'onQueueReady', 'onHttpCallResponse'] as const) {
      const arity = CALLBACK_EXPORTS[key][1];
      expect(new Set(counts.get(key) ?? []), key).toEqual(new Set([arity]));
    }
  });

  it('never call a callback the module does not export, nor count a header map for it', async () => {
    t = createTestHost();
    const bytes = await wat(`(module ${PRELUDE}
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_context_create") (param i32 i32)
        (call $record (i32.const ${Cb.contextCreate}) (local.get 0) (local.get 1) (i32.const 0)))
      (func (export "proxy_on_delete") (param i32)
        (call $record (i32.const ${Cb.delete}) (local.get 0) (i32.const 0) (i32.const 0))))`);
    const vm = await loadPlugin(t, 'sparse', bytes);
    const before = records(vm).length;
    const chain = t.host.createStream(['sparse']);
    const request = countingMap([[':path', '/'], ['a', 'b']]);
    const response = countingMap([[':status', '200']]);
    expect(chain.onRequestHeaders(request.map, false)).toEqual({ kind: 'continue' });
    expect(chain.onRequestBody(Buffer.from('body'), true)).toEqual({ kind: 'continue', body: Buffer.from('body') });
    expect(chain.onResponseHeaders(response.map, true)).toEqual({ kind: 'continue' });
    chain.done();
    expect(request.reads()).toBe(0);
    expect(response.reads()).toBe(0);
    // The context still opens and goes away as in Envoy: on_context_create and on_delete, nothing in between.
    expect(records(vm).slice(before)).toEqual([
      [Cb.contextCreate, 2, 1, 0],
      [Cb.delete, 2, 0, 0],
    ]);
    expect(vm.activeStreams).toBe(0);
  });
});

/** Imports that satisfy the probe's `env` and `__weft`-free imports, for instantiating it outside a VM. */
function stubImports(bytes: Uint8Array): WebAssembly.Imports {
  const imports: Record<string, Record<string, () => number>> = {};
  for (const i of WebAssembly.Module.imports(new WebAssembly.Module(bytes))) (imports[i.module] ??= {})[i.name] = () => 0;
  return imports;
}
