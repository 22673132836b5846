// Every public API of @weft/sdk, exercised by the api-plugin fixture under the emulator: header maps, bodies,
// trailers, properties, local responses, stream control, callouts, shared data/queues/counters, metrics, logging,
// time and randomness, JSON, weft's breaker and limiter wrappers, deferred onDone, root selection, and abort.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { circuitBreakersSchema, rateLimitDomainSchema } from '../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import { registerSharedStateForeignFunctions } from '../../runtime/shared-state/foreign-functions.js';
import { createSharedState, type SharedState } from '../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { registerCounterForeignFunction } from '../../runtime/wasm/counter-foreign-function.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { EmulatorLoadError, PluginEmulator, PluginLogLevel } from './plugin-emulator.js';
import { ensurePluginBuilt } from './ensure-plugin-built.js';

setLogLevel('error', 'sdk-api-test');
const FIXTURE = fileURLToPath(new URL('./fixtures/api-plugin/', import.meta.url));
let wasm: string;
let emu: PluginEmulator | undefined;
let state: SharedState | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(FIXTURE);
});

afterEach(async () => {
  await emu?.close();
  await state?.close();
  emu = undefined;
  state = undefined;
});

function registry(): ForeignFunctionRegistry {
  state = createSharedState(
    { backend: 'memory' },
    {
      metrics: new MetricsRegistry(),
      nodeName: 'n',
      logger: createLogger('sdk-api-test'),
      rateLimits: [rateLimitDomainSchema.parse({ domain: 'api', descriptors: [{ entries: [{ key: 'k' }], requestsPerUnit: 5, unit: 'minute' }] })],
      circuitBreakers: circuitBreakersSchema.parse({}),
    },
  );
  const r = new ForeignFunctionRegistry();
  registerSharedStateForeignFunctions(r, state);
  registerCounterForeignFunction(r, state.backend);
  r.register('test.echo', (args) => new Uint8Array([...args, ...new TextEncoder().encode('-pong')]));
  return r;
}

async function start(config: unknown = {}, name = 'api'): Promise<PluginEmulator> {
  // The fixture registers a root context per root id, so the tests name it (Istio's pluginName) as well.
  emu = await PluginEmulator.create({ wasm, config, name, pluginName: name, foreignFunctions: registry() });
  return emu;
}

function get(e: PluginEmulator, path: string, headers: Record<string, string> = {}, eos = true) {
  const s = e.stream({ source: { address: '10.0.0.7', port: 4242, principal: 'spiffe://td/ns/a/sa/b' } });
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': path, ':authority': 'api', ...headers }, eos);
  const h = (name: string): string | undefined => s.requestHeader(`x-r-${name}`);
  return { s, r, h };
}

describe('SDK API through the api-plugin fixture', () => {
  it('header maps: get, lookup, bytes, has, add, replace, replaceBytes, remove, all, sizes', async () => {
    const e = await start();
    const { h, s } = get(e, '/headers', { 'x-a': 'A', 'x-raw': 'r\xffw', 'x-multi': 'one', 'x-gone': 'bye' });
    expect(h('count')).toBe('7');
    expect([h('get'), h('get-missing'), h('lookup-missing'), h('raw-length'), h('has')]).toEqual(['A', 'null', 'NotFound:false', '3', 'true,false']);
    expect([h('add'), h('replace'), h('replace-bytes'), h('remove')]).toEqual(['Ok', 'Ok', 'Ok', 'Ok']);
    expect(s.requestHeader('x-replaced')).toBe('new');
    expect(s.requestHeader('x-bytes')).toBe('\xc3\xa9');
    expect(s.requestHeader('x-gone')).toBeUndefined();
    expect(h('all-multi')).toBe('one;two;');
    expect([h('size-ok'), h('all-bytes')]).toEqual(['true', 'true']);
  });

  it('returns non-Ok host results to the plugin instead of aborting', async () => {
    const e = await start();
    const { h, r } = get(e, '/status');
    expect(r.action).toBe('continue');
    expect([h('trailers-add'), h('response-get'), h('bad-map'), h('plugin-config')]).toEqual(['NotFound', 'NotFound', 'BadArgument', 'NotFound']);
    expect(e.vm.state).toBe('ready');
  });

  it('local responses with bytes, headers and details', async () => {
    const e = await start();
    const { s, r } = get(e, '/local');
    expect(r.action).toBe('localResponse');
    expect(s.localResponse).toMatchObject({ status: 418, details: 'api_local', headers: [['x-teapot', 'yes']] });
    expect([...s.localResponse!.body]).toEqual([0x61, 0x00, 0xff]);
  });

  it('properties: strings, integers, missing, wrong type, set and read back, root id', async () => {
    const e = await start();
    const { h } = get(e, '/props');
    expect([h('principal'), h('port'), h('not-int'), h('missing'), h('root-id')]).toEqual(['spiffe://td/ns/a/sa/b', 'Ok:4242', 'SerializationFailure', 'NotFound', 'api']);
    expect([h('set'), h('set-get'), h('set-bytes')]).toEqual(['Ok', 'v1', 'Ok']);
  });

  it('http callouts: the response reaches the calling stream, which edits headers and continues', async () => {
    const e = await start();
    const { s, r, h } = get(e, '/callout');
    expect(r.action).toBe('pause');
    expect([h('call'), h('pending-calls')]).toEqual(['Ok', '1']);
    const call = e.httpCalls.pending[0]!;
    expect([call.cluster, call.header(':method'), call.header(':path'), call.bodyText, call.timeoutMs]).toEqual(['svc', 'POST', '/check', 'question', 500]);
    call.respond({ status: 201, headers: { 'x-answer': 'yes' }, body: 'fine', trailers: { t: '1' } });
    expect((await r.resume!).action).toBe('continue');
    expect([h('callout-status'), h('callout-header'), h('callout-body'), h('callout-trailers'), h('callout-raw'), h('continue')]).toEqual(['201', 'yes', 'fine', '1', 'yes,fine,1', 'Ok']);
    s.end();
    const failed = get(e, '/callout');
    e.httpCalls.pending[0]!.fail();
    expect((await failed.r.resume!).action).toBe('localResponse');
    expect(failed.s.localResponse?.status).toBe(502);
  });

  it('an http call without :path is refused with BadArgument, and the plugin carries on', async () => {
    const e = await start();
    const { h, r } = get(e, '/callout-bad');
    expect(r.action).toBe('continue');
    expect(h('call')).toBe('BadArgument');
  });

  it('shared data with CAS, shared counters and shared queues (with onQueueReady on the root)', async () => {
    const e = await start();
    const { h } = get(e, '/shared');
    expect([h('get-missing'), h('set'), h('get'), h('cas-mismatch'), h('cas-ok')]).toEqual(['NotFound', 'Ok', 'v1:true', 'CasMismatch', 'Ok']);
    expect(h('counter')).toBe('7,7');
    expect([h('queue'), h('resolve-missing'), h('dequeue-empty'), h('enqueue'), h('dequeue'), h('enqueue-bad')]).toEqual(['true', 'NotFound', 'Empty', 'Ok', 'item', 'NotFound']);
  });

  it('metrics: counters, gauges, histograms and their refusals', async () => {
    const e = await start();
    const { h } = get(e, '/metrics');
    expect([h('same-id'), h('inc'), h('inc-negative'), h('counter')]).toEqual(['true', 'Ok', 'BadArgument', '3']);
    expect(h('gauge')).toBe('Ok,Ok,5');
    expect(h('histogram')).toBe('Ok,BadArgument');
    expect(h('kind-clash')).toBe('BadArgument');
    expect(await e.metricValue('api_counter_total')).toBe(3);
    expect(await e.metricValue('api_gauge')).toBe(5);
    expect(await e.metricValue('api_histogram')).toBe(1);
  });

  it('time, randomness and logging at every level', async () => {
    const e = await start();
    expect([get(e, '/time').h('time-ok'), get(e, '/time').h('random-ok')]).toEqual(['true', 'true']);
    const { h } = get(e, '/log');
    expect(h('level')).toBe('1');
    expect(h('log-bad-level')).toBe('BadArgument');
    const messages = e.logs.filter((l) => l.message.startsWith('api ')).map((l) => `${l.level}:${l.message}`);
    expect(messages).toEqual(['1:api debug', '2:api info', '3:api warn', '4:api error', '5:api critical']);
    expect(e.logs.some((l) => l.message.startsWith('api: configured, vm config size 0, config size 2'))).toBe(true);
  });

  it('StringMatcher answers what matchesAny does, on a whole string, a range of one and ASCII bytes; propertyInto, propertyBytesInto and replaceHeaderFromBlock in place, isAsciiBytes, recycled small blocks', async () => {
    const e = await start();
    const values = ['', '/', '/api', '/api/', '/api/v1', '/api/v1/users', '/apix', 'x.css', '.css', 'css', '/x/1/y', '/x/1/2/y', '/x//y', 'GET', 'get'];
    const cases: [string[], string][] = [
      [[], '000000000000000'],
      [['*'], '111111111111111'],
      [['/api'], '001000000000000'],
      [['/api/*'], '000111000000000'],
      [['/api*'], '001111100000000'],
      [['*.css'], '000000011000000'],
      [['/x/*/y'], '000000000010100'],
      [['/x/**/y', '/api/*/users'], '000001000011100'],
      [['/api/**'], '000111000000000'],
      [['**'], '111111111111111'],
      [['GET', 'POST'], '000000000000010'],
      [['', 'css'], '100000000100000'],
      [['/*/v1', '*/'], '010110000000000'],
    ];
    for (const [patterns, expected] of cases) {
      const { h } = get(e, '/matcher', { ...(patterns.length === 0 ? {} : { 'x-patterns': patterns.join('|') }), 'x-values': values.join('|') });
      expect({ patterns, any: h('any'), compiled: h('compiled'), ranged: h('ranged'), ascii: h('ascii'), count: h('patterns') }).toEqual({ patterns, any: expected, compiled: expected, ranged: expected, ascii: expected, count: String(patterns.length) });
      expect([h('principal-in-place'), h('missing-in-place')]).toEqual(['true:spiffe://td/ns/a/sa/b', 'false:0']);
      expect([h('principal-framed'), h('echo'), h('ascii-bytes'), h('small-blocks')]).toEqual(['true:spiffe://td/ns/a/sa/b:true', 'spiffe://td/ns/a/sa/b', 'true,false,true', 'true:0:0']);
    }
  });

  it('sized blocks are recycled within their power-of-two class (up to 4 KiB, four per class), ContextPool renumbers what it gives back', async () => {
    const e = await start();
    const { h } = get(e, '/recycle');
    // 1 and 64 bytes share the 64-byte class; 65 and 128, 200 and 256, 1000 and 1024, 4096 alone in its class.
    expect(h('sized-same-class')).toBe('1111111');
    expect(h('sized-next-class')).toBe('0000000');
    expect(h('sized-big')).toMatch(/^(freed|reused):0:0:0$/);
    expect(h('sized-kept')).toBe('4');
    expect(h('context-pool')).toBe('true:2:true:41:true:42:true:true');
  });

  it('JSON, quoting, matching, base64, UTF-8 decoding and header serialization helpers', async () => {
    const e = await start();
    const { h } = get(e, '/util');
    expect(h('quote')).toBe('"a\\"b\\\\c\\n\\u0001"');
    expect(Buffer.from(h('json')!, 'latin1').toString('utf8')).toBe('{"a":[1,2.5,-300,true,false,null,"sé"],"b":{"c":"d"},"a2":1}');
    expect([h('kinds'), h('typed'), h('get-typed'), h('kind-checks')]).toEqual(['2221103', 'truetruetruetrue', 'd,1.0,true,true', 'true']);
    expect(h('json-error')).toBe("unexpected character '}' at offset 10");
    expect([h('json-trailing'), h('json-deep'), h('string-array'), h('unknown-key')]).toEqual(['false', 'false', 'truetrue', 'a2']);
    expect(Buffer.from(h('lower')!, 'latin1').toString('utf8')).toBe('mixed-Ünï');
    expect(h('match')).toBe('truetruefalsetrue');
    expect(h('base64')).toBe('aGVsbG8_,6,true');
    expect(Buffer.from(h('utf8')!, 'latin1').toString('utf8')).toBe('ab\ufffd\ufffd');
    expect([h('pairs'), h('truncated'), h('manual')]).toEqual(['2:k=v:empty-name', '0', '{"n":1.5,"arr":[]}']);
    expect([h('host-result'), h('json-kind'), h('as-number')]).toEqual(['false:CasMismatch:Status77', '5', '9.0,true,true,true']);
  });

  it('JSON documents from a request body: parsed and re-serialized, or a positioned error', async () => {
    const e = await start();
    for (const [body, want] of [
      ['{"x": [1, {"y": "\\u0041"}], "z": -0.5e1}', '{"x":[1,{"y":"A"}],"z":-5}'],
      ['{"x": 1,}', "error: expected a string key at offset 8"],
      ['"\x01"', 'error: control character in string at offset 1'],
      ['', 'error: unexpected end of input at offset 0'],
      ['01', 'error: unexpected data after the document at offset 1'],
      ['-', 'error: bad number at offset 1'],
      ['1.', "error: bad number: digits expected after '.' at offset 2"],
      ['1e+', 'error: bad number: digits expected in exponent at offset 3'],
      ['[1,2', "error: expected ',' or ']' at offset 4"],
      ['{"a" 1}', "error: expected ':' after key at offset 5"],
      ['{"a":1,"a":2}', '{"a":2}'],
      ['"\\ud83d\\ude00 \\/"', '"😀 /"'],
      ['"bad \\x"', 'error: bad escape at offset 6'],
      ['tru', "error: unexpected character 't' at offset 0"],
      [' [ [ ] , { } , 1e2 , -0 ] ', '[[],{},100,0]'],
    ] as const) {
      const { s } = get(e, '/json', {}, false);
      const mid = s.sendRequestBody(body.slice(0, 3), false);
      expect(mid.action).toBe('buffer');
      s.sendRequestBody(body.slice(3), true);
      expect(s.localResponseText).toBe(want);
    }
  });

  it('bodies and trailers: buffering, size, prepend/append/replace, trailer callbacks on both sides', async () => {
    const e = await start();
    const { s } = get(e, '/body', {}, false);
    expect(s.sendRequestBody('hel', false).action).toBe('buffer');
    const done = s.sendRequestBody('lo', true);
    expect(new TextDecoder().decode(done.body)).toBe('<hello>');
    expect(s.requestHeader('x-r-body-size')).toBe('5/5');
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('x-response-seen')).toBe('1');
    expect(s.sendResponseBody('abc', false).action).toBe('buffer');
    expect(new TextDecoder().decode(s.sendResponseBody('def', true).body)).toBe('ABCDEF');
    const t = get(e, '/trailers', {}, false);
    t.s.sendRequestBody('x', false);
    t.s.sendRequestTrailers({ 'grpc-status': '0' });
    expect(t.s.requestTrailers).toEqual([['grpc-status', '0'], ['x-trailer-seen', '1']]);
    t.s.sendResponseHeaders({ ':status': '200' });
    t.s.sendResponseTrailers({ a: 'b' });
    expect(t.s.responseTrailers).toEqual([['a', 'b'], ['x-checked', 'yes']]);
    const drop = get(e, '/drop', {}, false);
    expect(drop.s.sendRequestBody('secret', false).action).toBe('buffer');
  });

  it('weft extensions: foreign functions raw, breaker acquire/record/state, rate limit', async () => {
    const e = await start();
    const f = get(e, '/foreign');
    expect([f.h('echo'), f.h('missing')]).toEqual(['Ok:ping-pong', 'NotFound']);
    const b = get(e, '/breaker');
    if (b.r.action === 'pause') expect((await b.r.resume!).action).toBe('continue');
    expect(b.h('acquire')).toMatch(/^Ok:(true|false)$/);
    expect([b.h('permit'), b.h('record'), b.h('record-again'), b.h('state')]).toEqual(['true:CLOSED:false', 'Ok', 'BadArgument', 'CLOSED']);
    const rl = get(e, '/ratelimit');
    expect([rl.h('rl-status'), rl.h('rl-pending')]).toEqual(['Ok', 'false']);
  });

  it('rate-limit answers read in one pass decode as the JSON tree does, malformed ones included', async () => {
    const e = await start();
    const answers = [
      '{"id":1,"context":2,"code":"OK","statuses":[{"code":"OK","remaining":41,"resetMs":999,"retryAfterMs":0,"source":"backend","name":"api.user"}],"headers":{"ratelimit-policy":"\\"api.user\\";q=42;w=1","ratelimit":"\\"api.user\\";r=41;t=1"}}',
      ' { "code" : "OVER_LIMIT" , "statuses" : [ 7, {"code":"OVER_LIMIT","retryAfterMs":1.5e3,"x":{"deep":[1,{"a":null}]},"source":"cache"}, {"code":"OK","remaining":"n"} ], "headers" : {"retry-after":"2","x-n":3,"x-\\u00e9":"\\u0041\\n"}, "extra": [true, false, null] } ',
      '{"error":"bad request","code":"WEFT_ERR_BAD_REQUEST"}',
      '{"code":"OK","error":"late error"}',
      '{"statuses":[]}',
      '{"code":"OK","statuses":{},"headers":[]}',
      '{"code":"OK","statuses":[{"code":"OK"}],"headers":null}',
      '{"code":"OK","statuses":[{"code":"OK",}]}',
      '{"code":"OK"} trailing',
      '{"code":"OK"',
      '[1,2]',
      'not json',
      '',
    ];
    for (const answer of answers) {
      const r = get(e, '/ratelimit-answer', answer === '' ? {} : { 'x-answer': answer });
      expect(r.h('rl-fast'), answer).toBe(r.h('rl-tree'));
    }
    expect(get(e, '/ratelimit-answer', { 'x-answer': answers[0]! }).h('rl-fast')).toBe('OK||[false,41.0,999.0,0.0,backend,api.user]|ratelimit-policy="api.user";q=42;w=1;ratelimit="api.user";r=41;t=1;');
    expect(get(e, '/ratelimit-answer', { 'x-answer': answers[2]! }).h('rl-fast')).toBe('|bad request||');
  });

  it('cluster-wide counters: sharedCounterAdd answers later, to the stream that asked', async () => {
    const e = await start();
    const a = get(e, '/counter');
    expect([a.r.action, a.h('counter-call')]).toEqual(['pause', 'Ok:true']);
    expect((await a.r.resume!).action).toBe('continue');
    expect(a.h('counter-value')).toBe('1.0:true');
    const b = get(e, '/counter', { 'x-delta': '4' });
    await b.r.resume;
    expect(b.h('counter-value')).toBe('5.0:true');
    await emu?.close();
    emu = await PluginEmulator.create({ wasm, config: {}, name: 'api' });
    const missing = get(emu, '/counter');
    expect(missing.h('counter-call')).toBe('NotFound:false');
    expect(missing.r.action).toBe('continue');
  });

  it('closeStream resets the stream', async () => {
    const e = await start();
    const { r, s } = get(e, '/close');
    expect(r.action).toBe('reset');
    expect(s.reset).toBe(true);
  });

  it('a stream whose onDone returns false is logged and deleted only after done(), called from a tick', async () => {
    const e = await start({ tickMs: 0 });
    const { s } = get(e, '/defer-done');
    s.end();
    expect(await e.metricValue('api_logged_total')).toBe(0);
    e.tick();
    await e.settle();
    expect(await e.metricValue('api_logged_total')).toBe(1);
    expect(await e.metricValue('api_deleted_total')).toBe(1);
    expect(await e.metricValue('api_ticks_total')).toBe(1);
  });

  it('ticks on the period the plugin sets', async () => {
    const e = await start({ tickMs: 10 });
    await new Promise((r) => setTimeout(r, 120));
    expect(await e.metricValue('api_ticks_total')).toBeGreaterThanOrEqual(3);
  });

  it('selects the root context registered for the plugin_root_id, the default otherwise', async () => {
    const err = await start({}, 'refusing-root').catch((x: unknown) => x);
    expect(err).toBeInstanceOf(EmulatorLoadError);
    expect((err as EmulatorLoadError).problems[0]!.reason).toMatch(/configure_failed/);
    await state?.close();
    state = undefined;
    const e = await start({}, 'anything-else');
    expect(get(e, '/props').h('root-id')).toBe('anything-else');
  });

  it('a configuration that is not JSON is refused at load', async () => {
    await expect(start('nope')).rejects.toBeInstanceOf(EmulatorLoadError);
  });

  it('an AssemblyScript abort logs its message through proxy_log at CRITICAL and fails only this VM', async () => {
    const e = await start();
    const { s } = get(e, '/abort');
    expect(s.localResponse?.status).toBe(503);
    expect(s.localResponseHeader('x-weft-error')).toBe('WEFT_ERR_PLUGIN_FAILED');
    const critical = e.logsAtLeast(PluginLogLevel.critical);
    expect(critical.some((m) => /^abort: Index out of range at ~lib\/array\.ts:\d+:\d+$/.test(m))).toBe(true);
    // The next request gets a fresh VM.
    expect(get(e, '/time').h('time-ok')).toBe('true');
  });
});
