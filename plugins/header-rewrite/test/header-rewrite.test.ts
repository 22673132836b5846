// header-rewrite through the emulator: every rule kind and value source, bad configurations refused with the previous
// rules kept, and header bytes that are not UTF-8.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorLoadError, PluginEmulator, PluginLogLevel, ensurePluginBuilt } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
let wasm: string;
let emu: PluginEmulator | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

const REQUEST = { ':method': 'GET', ':path': '/reviews/1', ':authority': 'reviews', 'x-internal': 'secret', 'x-user': 'alice' };

describe('header-rewrite', () => {
  it('removes, sets and adds request headers from literals, properties, request headers and the trace id', async () => {
    emu = await PluginEmulator.create({
      wasm,
      config: {
        request: {
          remove: ['X-Internal'],
          set: [
            { name: 'x-source-principal', fromProperty: 'source.principal' },
            { name: 'x-env', value: 'prod' },
            { name: 'x-user', value: 'replaced' },
            { name: 'x-missing', fromProperty: 'no.such.property' },
            { name: 'x-missing-default', fromProperty: 'no.such.property', default: 'none' },
          ],
          add: [
            { name: 'x-trace-id', from: 'traceId' },
            { name: 'x-copied', fromHeader: 'X-User' },
            { name: 'x-env', value: 'second' },
          ],
        },
      },
    });
    const s = emu.stream({ source: { address: '10.0.0.1', port: 4000, principal: 'spiffe://cluster.local/ns/default/sa/productpage' } });
    const r = s.sendRequestHeaders({ ...REQUEST, traceparent: TRACEPARENT });
    expect(r.action).toBe('continue');
    expect(s.requestHeader('x-internal')).toBeUndefined();
    expect(s.requestHeader('x-source-principal')).toBe('spiffe://cluster.local/ns/default/sa/productpage');
    expect(s.requestHeaderValues('x-env')).toEqual(['prod', 'second']);
    expect(s.requestHeader('x-user')).toBe('replaced');
    expect(s.requestHeader('x-missing')).toBeUndefined();
    expect(s.requestHeader('x-missing-default')).toBe('none');
    expect(s.requestHeader('x-trace-id')).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    // Sets run before adds, so the copy sees the replaced value.
    expect(s.requestHeader('x-copied')).toBe('replaced');
    s.end();
  });

  it('rewrites response headers, with request headers and the trace id captured while the request passed', async () => {
    emu = await PluginEmulator.create({
      wasm,
      config: {
        response: {
          remove: ['server'],
          set: [{ name: 'x-request-user', fromHeader: 'x-user' }, { name: 'x-trace-id', from: 'traceId' }],
          add: [{ name: 'cache-control', value: 'no-store' }],
        },
      },
    });
    const s = emu.stream();
    s.sendRequestHeaders({ ...REQUEST, 'x-b3-traceid': 'A3CE929D0E0E4736' });
    expect(s.requestHeader('x-internal')).toBe('secret');
    expect(s.sendResponseHeaders({ ':status': '200', server: 'envoy', 'cache-control': 'max-age=10' }).action).toBe('continue');
    expect(s.responseHeader('server')).toBeUndefined();
    expect(s.responseHeader('x-request-user')).toBe('alice');
    expect(s.responseHeader('x-trace-id')).toBe('a3ce929d0e0e4736');
    expect(s.responseHeaderValues('cache-control')).toEqual(['max-age=10', 'no-store']);
    s.end();
  });

  it('skips a trace id that is not a valid W3C traceparent', async () => {
    emu = await PluginEmulator.create({ wasm, config: { request: { set: [{ name: 'x-trace-id', from: 'traceId', default: 'unknown' }] } } });
    for (const tp of ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', 'garbage', '00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']) {
      const s = emu.stream();
      s.sendRequestHeaders({ ...REQUEST, traceparent: tp });
      expect(s.requestHeader('x-trace-id')).toBe('unknown');
      s.end();
    }
  });

  it('passes header values that are not UTF-8 through byte-exact, and copies them with U+FFFD replacement', async () => {
    emu = await PluginEmulator.create({ wasm, config: { request: { set: [{ name: 'x-copy', fromHeader: 'x-raw' }] } } });
    const s = emu.stream();
    // weft carries header bytes as latin1 strings: \xff\xfe is two bytes that are not UTF-8 (obs-text in RFC 9110).
    const raw = 'ok\xff\xfe\xc3';
    s.sendRequestHeaders({ ...REQUEST, 'x-raw': raw });
    expect(s.requestHeader('x-raw')).toBe(raw);
    // Each invalid byte reads as U+FFFD, written back as its UTF-8 bytes EF BF BD.
    expect(Buffer.from(s.requestHeader('x-copy')!, 'latin1').toString('utf8')).toBe('ok\ufffd\ufffd\ufffd');
    s.end();
    expect(emu.vm.state).toBe('ready');
  });

  it('refuses a configuration that is not JSON at load, naming the reason', async () => {
    const err = await PluginEmulator.create({ wasm, config: '{"request": {"set": [' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmulatorLoadError);
    expect((err as EmulatorLoadError).problems[0]!.reason).toMatch(/rejected its configuration/);
  });

  it.each([
    ['not JSON', 'request: [x'],
    ['not an object', [1, 2]],
    ['an unknown field', { requests: {} }],
    ['a bad header name', { request: { set: [{ name: 'bad header', value: 'x' }] } }],
    ['two value sources', { request: { set: [{ name: 'x', value: 'a', fromProperty: 'source.principal' }] } }],
    ['no value source', { response: { add: [{ name: 'x' }] } }],
    ['an unknown from', { request: { add: [{ name: 'x', from: 'spanId' }] } }],
    ['remove that is not a list', { request: { remove: 'x-a' } }],
  ])('rejects %s in onConfigure; the host reports it and the previous rules keep serving', async (_what, bad) => {
    emu = await PluginEmulator.create({ wasm, config: { request: { set: [{ name: 'x-version', value: 'v1' }] } } });
    const result = await emu.reconfigure(bad);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems[0]!.reason).toMatch(/configure_failed|rejected its configuration/);
    expect(emu.logsAtLeast(PluginLogLevel.error).some((m) => m.startsWith('header-rewrite: rejected configuration:'))).toBe(true);
    const s = emu.stream();
    s.sendRequestHeaders(REQUEST);
    expect(s.requestHeader('x-version')).toBe('v1');
    s.end();
  });

  it('applies a good reconfiguration to new requests', async () => {
    emu = await PluginEmulator.create({ wasm, config: { request: { set: [{ name: 'x-version', value: 'v1' }] } } });
    expect((await emu.reconfigure({ request: { set: [{ name: 'x-version', value: 'v2' }] } })).ok).toBe(true);
    const s = emu.stream();
    s.sendRequestHeaders(REQUEST);
    expect(s.requestHeader('x-version')).toBe('v2');
    s.end();
  });

  it('passes everything through with an empty configuration', async () => {
    emu = await PluginEmulator.create({ wasm });
    const s = emu.stream();
    s.sendRequestHeaders(REQUEST);
    expect(s.requestHeaders).toEqual(Object.entries(REQUEST));
    s.end();
  });
});
