// cors through the emulator: preflights answered for allowed origins, response headers on actual requests, wildcard
// and credentialed configurations, and bad configurations refused with the previous one kept; and the Origin held as
// the host's bytes until its response: each stream its own, non-ASCII echoed decoded, given back when none comes.
import { readFileSync } from 'node:fs';
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

const CONFIG = {
  allowOrigins: ['https://app.example.com', 'https://*.example.org'],
  allowMethods: ['GET', 'PUT'],
  allowHeaders: ['content-type', 'x-user'],
  exposeHeaders: ['x-request-id'],
  maxAgeSeconds: 600,
};

function preflight(e: PluginEmulator, origin: string, method = 'PUT', extra: Record<string, string> = {}) {
  const s = e.stream();
  const r = s.sendRequestHeaders({ ':method': 'OPTIONS', ':path': '/api', ':authority': 'api', origin, 'access-control-request-method': method, ...extra }, true);
  s.end();
  return { r, s };
}

describe('cors', () => {
  it('answers a preflight from an allowed origin with 204 and the allowed methods, headers and max age', async () => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG });
    const { r, s } = preflight(emu, 'https://app.example.com');
    expect(r.action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(204);
    expect(s.localResponseHeader('access-control-allow-origin')).toBe('https://app.example.com');
    expect(s.localResponseHeader('access-control-allow-methods')).toBe('GET, PUT');
    expect(s.localResponseHeader('access-control-allow-headers')).toBe('content-type, x-user');
    expect(s.localResponseHeader('access-control-max-age')).toBe('600');
    expect(s.localResponseHeader('vary')).toBe('Origin');
    expect(s.localResponseHeader('access-control-allow-credentials')).toBeUndefined();
    const sub = preflight(emu, 'https://shop.example.org');
    expect(sub.s.localResponseHeader('access-control-allow-origin')).toBe('https://shop.example.org');
    // A method not allowed: still answered, without Allow-Methods, so the browser refuses the request.
    const del = preflight(emu, 'https://app.example.com', 'DELETE');
    expect(del.s.localResponse?.status).toBe(204);
    expect(del.s.localResponseHeader('access-control-allow-methods')).toBeUndefined();
  });

  it('passes preflights and requests from other origins through without CORS headers', async () => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG });
    expect(preflight(emu, 'https://evil.example.net').r.action).toBe('continue');
    expect(preflight(emu, 'https://a.b.example.org.evil').r.action).toBe('continue');
    const s = emu.stream();
    s.sendRequestHeaders({ ':method': 'GET', ':path': '/api', ':authority': 'api', origin: 'https://evil.example.net' });
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('access-control-allow-origin')).toBeUndefined();
    s.end();
  });

  it('adds allow-origin, expose-headers and vary to responses of allowed cross-origin requests', async () => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG });
    const s = emu.stream();
    expect(s.sendRequestHeaders({ ':method': 'GET', ':path': '/api', ':authority': 'api', origin: 'https://app.example.com' }).action).toBe('continue');
    s.sendResponseHeaders({ ':status': '200', vary: 'Accept-Encoding' });
    expect(s.responseHeader('access-control-allow-origin')).toBe('https://app.example.com');
    expect(s.responseHeader('access-control-expose-headers')).toBe('x-request-id');
    expect(s.responseHeaderValues('vary')).toEqual(['Accept-Encoding', 'Origin']);
    s.end();
    const same = emu.stream();
    same.sendRequestHeaders({ ':method': 'GET', ':path': '/api', ':authority': 'api' });
    same.sendResponseHeaders({ ':status': '200' });
    expect(same.responseHeaders).toEqual([[':status', '200']]);
    same.end();
  });

  it('answers "*" for any origin, but echoes the origin when credentials are allowed', async () => {
    emu = await PluginEmulator.create({ wasm, config: { allowOrigins: ['*'], allowHeaders: ['*'] } });
    const any = preflight(emu, 'https://x.test', 'POST', { 'access-control-request-headers': 'x-a, x-b' });
    expect(any.s.localResponseHeader('access-control-allow-origin')).toBe('*');
    expect(any.s.localResponseHeader('access-control-allow-headers')).toBe('x-a, x-b');
    expect((await emu.reconfigure({ allowOrigins: ['*'], allowCredentials: true })).ok).toBe(true);
    const cred = preflight(emu, 'https://x.test', 'GET');
    expect(cred.s.localResponseHeader('access-control-allow-origin')).toBe('https://x.test');
    expect(cred.s.localResponseHeader('access-control-allow-credentials')).toBe('true');
  });

  it.each([
    ['not JSON', 'allowOrigins=*'],
    ['no origins', { allowMethods: ['GET'] }],
    ['origins that are not strings', { allowOrigins: [1] }],
    ['a bad maxAgeSeconds', { allowOrigins: ['*'], maxAgeSeconds: -5 }],
    ['an unknown field', { allowOrigins: ['*'], allowOrigin: 'x' }],
    ['a non-boolean allowCredentials', { allowOrigins: ['*'], allowCredentials: 'yes' }],
  ])('rejects %s and keeps the previous configuration', async (_what, bad) => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG });
    expect((await emu.reconfigure(bad)).ok).toBe(false);
    expect(emu.logs.some((l) => l.message.startsWith('cors: rejected configuration:'))).toBe(true);
    expect(preflight(emu, 'https://app.example.com').s.localResponse?.status).toBe(204);
  });
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

  it('starts every stream clean although contexts are reused: an allowed origin, then none, a non-ASCII one, a preflight', async () => {
    emu = await PluginEmulator.create({ wasm, config: ECHO });
    for (let round = 0; round < 2; round++) {
      const allowed = get(emu, 'https://app.example.com');
      allowed.sendResponseHeaders({ ':status': '200' });
      expect(allowed.responseHeader('access-control-allow-origin')).toBe('https://app.example.com');
      allowed.end();
      const plain = emu.stream();
      expect(plain.sendRequestHeaders({ ':method': 'GET', ':path': '/api', ':authority': 'api' }, true).action).toBe('continue');
      plain.sendResponseHeaders({ ':status': '200' });
      expect(plain.responseHeader('access-control-allow-origin')).toBeUndefined();
      expect(plain.responseHeader('vary')).toBeUndefined();
      plain.end();
      const decoded = get(emu, bytes('https://büro.example.org'));
      decoded.sendResponseHeaders({ ':status': '200' });
      expect(decoded.responseHeader('access-control-allow-origin')).toBe(bytes('https://büro.example.org'));
      decoded.end();
      const p = preflight(emu, 'https://shop.example.org', 'GET');
      expect(p.r.action).toBe('localResponse');
      expect(p.s.localResponseHeader('access-control-allow-origin')).toBe('https://shop.example.org');
      const after = get(emu, 'https://app.example.com');
      after.sendResponseHeaders({ ':status': '200' });
      expect(after.responseHeader('access-control-allow-origin')).toBe('https://app.example.com');
      after.end();
    }
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

  it('keeps nothing per CORS request (stub runtime): the context is reused, the Origin neither decoded nor copied', async () => {
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
 * Heap bytes a CORS request may keep: none. Its context is a deleted stream's, reused (ContextPool), and the Origin is
 * held as the host's bytes in a recycled block; a new context per request (48 bytes) or the Origin decoded (two bytes
 * a character) would push the figure over it.
 */
const CONTEXT_BYTES = 0;

describe('cors exports', () => {
  it('exports only the callbacks it acts on, so hosts skip done and log for it', () => {
    const names = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(wasm))).map((e) => e.name).filter((n) => n.startsWith('proxy_on_'));
    expect(names.sort()).toEqual(['proxy_on_configure', 'proxy_on_context_create', 'proxy_on_delete', 'proxy_on_memory_allocate', 'proxy_on_request_headers', 'proxy_on_response_headers', 'proxy_on_vm_start']);
  });
});
