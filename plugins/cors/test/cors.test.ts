// cors through the emulator: preflights answered for allowed origins, response headers on actual requests, wildcard
// and credentialed configurations, and bad configurations refused with the previous one kept.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

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
