// header-rewrite's per-request allocations stay where they are: built with AssemblyScript's stub runtime (a bump
// allocator that never frees) every allocation moves the heap pointer for good, so the pointer's advance across N
// requests is exactly the bytes allocated per request. The release build's heap must also stay flat (no leak).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));

/** The benchmark's realistic configuration: one set and one remove on the request, one add on the response. */
const CONFIG = {
  request: { set: [{ name: 'x-wasm-filter', value: 'on' }], remove: ['x-internal'] },
  response: { add: [{ name: 'x-served-by', value: 'weft-wasm' }] },
};

/**
 * Heap bytes each request may take, measured when the SDK was made allocation-lean: the request's context object
 * (16-byte block header, 16-byte object header, its id, root and captured-values fields). An added per-request
 * allocation (a string, an array, a result object) pushes the measured figure over it.
 */
const BYTES_PER_REQUEST_BUDGET = 48;

let dir: string;
let stubWasm: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-alloc-'));
  stubWasm = join(dir, 'stub.wasm');
  const errors: string[] = [];
  const result = await asc.main(['assembly/index.ts', '--config', 'asconfig.json', '--target', 'release', '--runtime', 'stub', '--baseDir', PLUGIN_DIR, '--outFile', stubWasm], {
    stdout: { write: () => true },
    stderr: { write: (c: string | Uint8Array) => void errors.push(String(c)) },
  });
  if (result.error !== null) throw new Error(`${result.error.message}\n${errors.join('')}`);
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function request(emu: PluginEmulator): void {
  const s = emu.stream({ source: { address: '10.0.0.1', port: 1 } });
  s.sendRequestHeaders({ ':method': 'GET', ':path': '/items', ':authority': 'svc', 'user-agent': 'wrk', 'x-internal': '1' }, true);
  s.sendResponseHeaders({ ':status': '200', 'content-type': 'text/plain' }, true);
  s.end();
}

function guestMemory(emu: PluginEmulator) {
  return emu.host.runtimeOf(emu.name)!.vm!.mem;
}

describe('header-rewrite steady-state allocations', () => {
  it(`allocates at most ${BYTES_PER_REQUEST_BUDGET} bytes per request (stub runtime: the heap pointer's advance)`, async () => {
    const emu = await PluginEmulator.create({ wasm: stubWasm, config: CONFIG, logLevel: 'error' });
    try {
      for (let i = 0; i < 200; i++) request(emu);
      const s = emu.stream({});
      s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'svc', 'x-internal': '1' }, true);
      expect(s.requestHeader('x-wasm-filter')).toBe('on');
      expect(s.requestHeader('x-internal')).toBeUndefined();
      s.end();
      const mem = guestMemory(emu);
      const n = 2000;
      const before = mem.allocate(1);
      for (let i = 0; i < n; i++) request(emu);
      const after = mem.allocate(1);
      expect(before).toBeGreaterThan(0);
      // The second probe's own block is the only allocation outside the requests: floor() drops its share.
      const perRequest = Math.floor((after - before) / n);
      expect(perRequest).toBeLessThanOrEqual(BYTES_PER_REQUEST_BUDGET);
    } finally {
      await emu.close();
    }
  });

  it('the release build (minimal runtime, collected by the SDK) keeps its memory flat over many requests', async () => {
    const emu = await PluginEmulator.create({ wasm: await ensurePluginBuilt(PLUGIN_DIR), config: CONFIG, logLevel: 'error' });
    try {
      for (let i = 0; i < 2000; i++) request(emu);
      const mem = guestMemory(emu);
      mem.refresh();
      const size = mem.buf.length;
      for (let i = 0; i < 20_000; i++) request(emu);
      mem.refresh();
      expect(mem.buf.length).toBe(size);
    } finally {
      await emu.close();
    }
  });
});
