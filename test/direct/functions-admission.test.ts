// Admission of function components: transpiled once and cached by sha256 across restarts; a core module, a component
// of another world and a wrong sha256 are each refused with their reason while the running version keeps serving.
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { componentEmbed, componentNew } from '@bytecodealliance/jco';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionFixture, type FunctionFixture } from '../helpers/function-fixtures.js';
import { fixture } from '../helpers/wasm-fixtures.js';
import { startWeft, testConfig, type WeftUnderTest } from '../helpers/weft-harness.js';

let hello: FunctionFixture;
let dir: string;
let w: WeftUnderTest | undefined;

function fileOf(name: string, bytes: Uint8Array): { url: string; sha256: string } {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { url: `file://${path}`, sha256: createHash('sha256').update(bytes).digest('hex') };
}

const fnConfig = (f: { url: string; sha256?: string }) => ({ functions: [{ name: 'hello', namespace: 'fns', ...f }] });

async function get(path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${Object.values(w?.app.ports.localPorts ?? {})[0]}${path}`);
  return { status: res.status, body: await res.text() };
}

beforeAll(async () => {
  hello = await functionFixture('hello');
  dir = mkdtempSync(join(tmpdir(), 'weft-fn-admission-'));
  process.env.WEFT_CACHE_DIR = join(dir, 'cache');
}, 900_000);

afterAll(async () => {
  await w?.close();
});

describe('function admission', () => {
  it('transpiles on first admission and reuses the cache after a restart', async () => {
    const raw = { ...fnConfig({ url: hello.url, sha256: hello.sha256 }), localPorts: [{ listen: '127.0.0.1:0', service: 'hello.fns', port: 80 }] };
    w = await startWeft(raw);
    expect(w.logs.find((l) => l.msg === 'function admitted')).toMatchObject({ fn: 'hello.fns', sha256: hello.sha256, cached: false });
    expect(await get('/first')).toEqual({ status: 200, body: 'hello from /first\n' });
    await w.close();
    w = await startWeft(raw);
    expect(w.logs.find((l) => l.msg === 'function admitted')).toMatchObject({ fn: 'hello.fns', cached: true, transpile_ms: 0 });
    expect(await get('/again')).toEqual({ status: 200, body: 'hello from /again\n' });
  }, 600_000);

  it.each([
    ['a core module given as a component', async () => fileOf('core.wasm', await fixture('add-header')), 'a core WebAssembly module, not a component'],
    [
      'a component of the wrong world',
      async () => fileOf('wrong.wasm', await componentNew(await componentEmbed({ dummy: true, witSource: 'package weft:wrong@0.1.0; world wrong { export run: func() -> string; }', world: 'wrong' }), [])),
      'wrong world: the component exports run; a function must export wasi:http/incoming-handler@0.2.x',
    ],
    ['a wrong sha256', () => Promise.resolve({ url: hello.url, sha256: '0'.repeat(64) }), `sha256 mismatch for file://`],
    ['bytes that are no WebAssembly', () => Promise.resolve(fileOf('text.wasm', new TextEncoder().encode('hello, not wasm'))), 'not a WebAssembly component (bad preamble)'],
  ])('refuses %s with its reason; the running version keeps serving', async (_what, make, reason) => {
    const app = (w as WeftUnderTest).app;
    const result = await app.reload(testConfig({ ...fnConfig(await make()), localPorts: [{ listen: '127.0.0.1:0', service: 'hello.fns', port: 80 }] }));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.problems.join('\n')).toContain(`function hello.fns: ${reason}`);
    expect(await get('/still')).toEqual({ status: 200, body: 'hello from /still\n' });
  });
});
