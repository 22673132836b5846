// authz reads :path, :method and source.principal into blocks the SDK's small-block allocator recycles (up to 64 bytes)
// or frees (longer): decisions stay the same on either side of that size, for ASCII and non-ASCII values, in any order,
// and the release build's heap stays flat over a mix of them.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StreamInfo } from '../../../runtime/wasm/stream-info.js';
import { PluginEmulator, ensurePluginBuilt, memoryGrowth } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
let wasm: string;
let emu: PluginEmulator | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

const CONFIG = {
  policies: [
    { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] },
    { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }] }] },
  ],
};

const peer = (principal: string): StreamInfo => ({ source: { address: '10.0.0.1', port: 1, principal } });
/** A principal of more than 64 bytes: its block is freed, not kept. */
const LONG_SA = `spiffe://cluster.local/ns/default/sa/${'a'.repeat(80)}`;
const LONG_PATH = `/api/${'x'.repeat(100)}?q=${'y'.repeat(40)}`;
/** Header values as weft holds them: one char per byte. */
const bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

function status(e: PluginEmulator, method: string, path: string, info: StreamInfo): number {
  const s = e.stream(info);
  const r = s.sendRequestHeaders({ ':method': method, ':path': path, ':authority': 'svc' }, true);
  s.end();
  return r.action === 'continue' ? 200 : (s.localResponse?.status ?? -1);
}

/** [method, path, principal, status]: short and long values interleaved, so recycled and freed blocks alternate. */
const CASES: [string, string, string, number][] = [
  ['GET', '/api/items?page=2', 'spiffe://cluster.local/ns/default/sa/a', 200],
  ['GET', LONG_PATH, LONG_SA, 200],
  ['GET', '/admin/x', 'spiffe://cluster.local/ns/default/sa/a', 403],
  ['GET', `/admin/${'z'.repeat(90)}`, LONG_SA, 403],
  ['POST', LONG_PATH, 'spiffe://cluster.local/ns/default/sa/a', 403],
  ['GET', '/api/items', `spiffe://cluster.local/ns/other/sa/${'b'.repeat(70)}`, 403],
  ['GET', bytes('/api/çà?x=é'), bytes('spiffe://cluster.local/ns/default/sa/ü'), 200],
  ['GET', bytes(`/api/${'é'.repeat(40)}`), LONG_SA, 200],
  ['GET', '/api/x', `spiffe://cluster.local/ns/${'n'.repeat(70)}/sa/a`, 403],
  ['GET', '/api/x', 'cluster.local/ns/default/sa/a', 200],
];

describe('authz over recycled host blocks', () => {
  it('decides the same for values below and above the recycled size, ASCII or not, in any order', async () => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG });
    for (let round = 0; round < 3; round++) {
      const order = round === 1 ? [...CASES].reverse() : CASES;
      for (const [method, path, principal, want] of order) expect({ method, path, got: status(emu, method, path, peer(principal)) }).toEqual({ method, path, got: want });
    }
  });

  it('keeps the release build heap flat over a mix of recycled and freed blocks', async () => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG, logLevel: 'error' });
    let i = 0;
    const next = (): void => {
      const [method, path, principal] = CASES[i++ % CASES.length]!;
      status(emu!, method, path, peer(principal));
    };
    for (let k = 0; k < 200; k++) next();
    expect(memoryGrowth(emu, 20_000, next)).toBe(0);
  });
});
