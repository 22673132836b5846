// cors holds a request's allowed Origin as the bytes the host wrote until its response echoes it: interleaved streams
// each echo their own origin, a non-ASCII origin is echoed as its UTF-8 decoding (what get() returns), and an origin
// held for a response that never comes is given back when the stream is deleted (the heap stays flat).
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PluginEmulator, buildWithStubRuntime, bytesKeptPerRequest, ensurePluginBuilt, memoryGrowth } from '../../../sdk/testing/index.js';

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

/** Credentials on: the origin is echoed rather than answered with "*". */
const ECHO = { allowOrigins: ['https://app.example.com', 'https://*.example.org'], allowCredentials: true, exposeHeaders: ['x-a'] };
/** test/bench/first-party-plugin-bench.ts's configuration. */
const BENCH = { allowOrigins: ['https://app.example.com'], exposeHeaders: ['x-a'] };

/** Header values as weft holds them: one char per byte. */
const bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

function get(e: PluginEmulator, origin: string) {
  const s = e.stream();
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/api', ':authority': 'api', origin }, true);
  expect(r.action).toBe('continue');
  return s;
}

describe('cors held origin', () => {
  it('echoes each stream its own origin when responses come in another order than the requests', async () => {
    emu = await PluginEmulator.create({ wasm, config: ECHO });
    const a = get(emu, 'https://app.example.com');
    const b = get(emu, 'https://shop.example.org');
    const c = get(emu, 'https://evil.example.net');
    b.sendResponseHeaders({ ':status': '200' });
    c.sendResponseHeaders({ ':status': '200' });
    a.sendResponseHeaders({ ':status': '200' });
    expect(a.responseHeader('access-control-allow-origin')).toBe('https://app.example.com');
    expect(b.responseHeader('access-control-allow-origin')).toBe('https://shop.example.org');
    expect(b.responseHeader('access-control-allow-credentials')).toBe('true');
    expect(c.responseHeader('access-control-allow-origin')).toBeUndefined();
    for (const s of [a, b, c]) s.end();
  });

  it('echoes a non-ASCII origin as its UTF-8 decoding, invalid bytes as U+FFFD', async () => {
    emu = await PluginEmulator.create({ wasm, config: ECHO });
    const valid = get(emu, bytes('https://büro.example.org'));
    valid.sendResponseHeaders({ ':status': '200' });
    expect(valid.responseHeader('access-control-allow-origin')).toBe(bytes('https://büro.example.org'));
    valid.end();
    // 0xE9 alone is not UTF-8: the plugin sees (and matches, and echoes) https://\uFFFD.example.org.
    const invalid = get(emu, 'https://\u00e9.example.org');
    invalid.sendResponseHeaders({ ':status': '200' });
    expect(invalid.responseHeader('access-control-allow-origin')).toBe(bytes('https://\ufffd.example.org'));
    invalid.end();
  });

  it('adds no CORS headers for an empty Origin, even when any origin is allowed', async () => {
    emu = await PluginEmulator.create({ wasm, config: { allowOrigins: ['*'] } });
    const s = get(emu, '');
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('access-control-allow-origin')).toBeUndefined();
    expect(s.responseHeader('vary')).toBeUndefined();
    s.end();
  });

  it('gives back an origin held for a response that never comes (release build: the heap stays flat)', async () => {
    emu = await PluginEmulator.create({ wasm: await ensurePluginBuilt(PLUGIN_DIR), config: ECHO, logLevel: 'error' });
    const unanswered = (): void => get(emu!, 'https://app.example.com').end();
    for (let i = 0; i < 200; i++) unanswered();
    expect(memoryGrowth(emu, 20_000, unanswered)).toBe(0);
  });

  it('keeps at most its context per CORS request (stub runtime): the Origin is neither decoded nor copied', async () => {
    const stub = await buildWithStubRuntime(PLUGIN_DIR);
    try {
      emu = await PluginEmulator.create({ wasm: stub.wasm, config: BENCH, logLevel: 'error' });
      const request = (): void => {
        const s = get(emu!, 'https://app.example.com');
        s.sendResponseHeaders({ ':status': '200', 'content-type': 'text/plain' }, true);
        expect(s.responseHeader('access-control-allow-origin')).toBe('https://app.example.com');
        s.end();
      };
      for (let i = 0; i < 200; i++) request();
      expect(bytesKeptPerRequest(emu, 2000, request)).toBeLessThanOrEqual(CONTEXT_BYTES);
    } finally {
      await stub.remove();
    }
  }, 120_000);
});

/**
 * A Cors context (object header, id, root, held block, origin, flag) as the stub runtime lays it out, measured when the
 * Origin was first held as bytes: its decoded string (two bytes a character) would push the figure over it.
 */
const CONTEXT_BYTES = 48;
