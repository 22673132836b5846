// Functions as mesh services: JS components built with componentize-js, served by weft itself in worker threads,
// reached by name, VIP and local port through the L7 path, with the serverless lifecycle, limits and metrics.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionFixture, type FunctionFixture } from '../helpers/function-fixtures.js';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { metricValue, startWeft, testConfig, type WeftUnderTest } from '../helpers/weft-harness.js';

let w: WeftUnderTest;
let hello: FunctionFixture;
let lab: FunctionFixture;
let plain: http.Server;
let plainPort: number;
let currentRaw: { functions: Record<string, unknown>[] } & Record<string, unknown>;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Absolute-form HTTP through weft's explicit proxy (what `curl -x` sends). */
function viaProxy(url: string, init: { method?: string; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: w.app.ports.explicitProxy, method: init.method ?? 'GET', path: url, headers: { host: u.host, ...init.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** POSTs `size` bytes (64 KiB chunks from `chunkAt`) through the explicit proxy without holding them; `onData` sees the answer. */
function postStream(url: string, size: number, chunkAt: (offset: number) => Buffer, onData: (c: Buffer) => void): Promise<{ status: number } | 'reset'> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: w.app.ports.explicitProxy, method: 'POST', path: url, headers: { host: u.host, 'content-length': size }, agent: false }, (r) => {
      r.on('data', onData);
      r.on('end', () => resolve({ status: r.statusCode ?? 0 }));
      r.on('error', () => resolve('reset'));
    });
    req.on('error', () => resolve('reset'));
    let offset = 0;
    const write = (): void => {
      while (offset < size) {
        const chunk = chunkAt(offset);
        offset += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  return metricValue(await w.metrics(), name, labels);
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  // The transpile cache is the default one (~/.cache/weft/functions), which outlives the run; admission from a fresh
  // cache is covered in functions-admission.test.ts (process.env is not touched here: test files share it).
  [hello, lab] = await Promise.all([functionFixture('hello'), functionFixture('lab')]);
  plain = http.createServer((req, res) => res.end('plain'));
  await new Promise<void>((r) => plain.listen(0, '127.0.0.51', r));
  plainPort = (plain.address() as net.AddressInfo).port;
  currentRaw = {
    workloads: [{ name: 'plain-1', addresses: ['127.0.0.51'], labels: { app: 'plain' } }],
    services: [{ name: 'plain', addresses: ['10.96.0.51'], ports: [{ port: 80, targetPort: plainPort, appProtocol: 'http' }], selector: { app: 'plain' }, annotations: { 'weft.dev/plugins': 'add-header' } }],
    plugins: [{ name: 'add-header', url: await wasmFileUrl(await fixture('add-header')) }],
    functions: [
      { name: 'hello', namespace: 'fns', url: hello.url, sha256: hello.sha256, addresses: ['10.96.0.80'] },
      { name: 'lab', namespace: 'fns', url: lab.url, sha256: lab.sha256, limits: { cpuMs: 300, timeoutMs: 8_000, memoryMb: 64, maxInstances: 2, maxQueue: 2, idleTimeoutMs: 60_000 } },
      { name: 'slow', namespace: 'fns', url: lab.url, limits: { maxInstances: 1, maxQueue: 2, idleTimeoutMs: 60_000 } },
      { name: 'caller', namespace: 'fns', url: lab.url, allowedOutboundHosts: ['http://plain.default'], limits: { cpuMs: 1_000 } },
      { name: 'other', namespace: 'fns', url: lab.url, allowedOutboundHosts: ['http://*.default:80'], limits: { cpuMs: 1_000 } },
      { name: 'brief', namespace: 'fns', url: hello.url, limits: { idleTimeoutMs: 300, moduleIdleTimeoutMs: 600 } },
      { name: 'bulk', namespace: 'fns', url: lab.url, limits: { memoryMb: 64, cpuMs: 120_000, timeoutMs: 600_000 } },
      { name: 'tight', namespace: 'fns', url: lab.url, limits: { memoryMb: 24, cpuMs: 120_000, timeoutMs: 600_000 } },
      { name: 'firstcall', namespace: 'fns', url: hello.url, limits: { cpuMs: 1, idleTimeoutMs: 60_000 } },
      { name: 'recycler', namespace: 'fns', url: hello.url, limits: { maxInstances: 1, maxRequestsPerInstance: 3, idleTimeoutMs: 60_000, cpuMs: 1_000 } },
      { name: 'coldburst', namespace: 'fns', url: hello.url, limits: { maxInstances: 2, idleTimeoutMs: 300, moduleIdleTimeoutMs: 600, cpuMs: 1_000 } },
    ],
    localPorts: [{ listen: '127.0.0.1:0', service: 'hello.fns', port: 80 }],
  };
  w = await startWeft(currentRaw);
}, 900_000);

afterAll(async () => {
  await w?.close();
  await new Promise((r) => plain?.close(r));
});

describe('a 10-line JS function as a mesh service', () => {
  it('answers by service name, by FQDN, by VIP and through a local port', async () => {
    const first = await viaProxy('http://hello.fns/by-name');
    if (first.status !== 200) console.log(JSON.stringify(w.logs.filter((l) => l.fn !== undefined)));
    expect(first).toMatchObject({ status: 200, body: 'hello from /by-name\n' });
    expect(await viaProxy('http://hello.fns.svc.cluster.local:80/fqdn')).toMatchObject({ status: 200, body: 'hello from /fqdn\n' });
    expect(await viaProxy('http://10.96.0.80/vip')).toMatchObject({ status: 200, body: 'hello from /vip\n' });
    const port = Object.values(w.app.ports.localPorts)[0] as number;
    const res = await fetch(`http://127.0.0.1:${port}/local?q=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('hello from /local?q=1\n');
    // The L7 path served them: access-log lines and Istio metrics name the function's service.
    const line = await w.waitForLog((e) => e.path === '/vip');
    expect(line).toMatchObject({ response_code: 200, destination_service: 'hello.fns.svc.cluster.local' });
    expect(await metric('weft_fn_requests_total', { fn: 'hello.fns', code: '200' })).toBeGreaterThanOrEqual(4);
  });
});

describe('the L7 path in front of a function', () => {
  it('applies plugins and authorization policies as for any service', async () => {
    const raw = (extra: Record<string, unknown>) => ({ ...currentRaw, ...extra });
    const reloaded = await w.app.reload(
      testConfig(
        raw({
          functions: currentRaw.functions.map((f) => (f.name === 'lab' ? { ...f, annotations: { 'weft.dev/plugins': 'add-header' } } : f)),
          policies: [{ name: 'no-admin', namespace: 'fns', action: 'DENY', targetRef: { kind: 'Service', name: 'lab' }, rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }],
        }),
      ),
    );
    expect(reloaded).toEqual({ ok: true });
    const seen = await viaProxy('http://lab.fns/headers');
    expect(seen.status).toBe(200);
    // The plugin edited the request the function saw, and the response the client got.
    expect(seen.body).toContain('x-wasm-filter: ');
    expect(seen.headers['x-served-by']).toBeDefined();
    const denied = await viaProxy('http://lab.fns/admin/users');
    expect(denied.status).toBe(403);
    expect(await w.waitForLog((e) => e.path === '/admin/users')).toMatchObject({ response_code: 403, response_flags: 'UAEX' });
    expect(await w.app.reload(testConfig(currentRaw))).toEqual({ ok: true });
  });
});

describe('serverless lifecycle', () => {
  it('scales to zero after the idle timeout, then counts the next request as a cold start', async () => {
    expect((await viaProxy('http://brief.fns/one')).status).toBe(200);
    const starts = await metric('weft_fn_cold_starts_total', { fn: 'brief.fns' });
    await eventually(async () => (await metric('weft_fn_instances', { fn: 'brief.fns' })) === 0);
    expect(await metric('weft_fn_evictions_total', { fn: 'brief.fns', reason: 'idle' })).toBeGreaterThanOrEqual(1);
    // The compiled module goes too, and comes back from the disk cache on the next request: a cold start.
    await eventually(async () => (await metric('weft_fn_modules_loaded', { fn: 'brief.fns' })) === 0);
    expect((await viaProxy('http://brief.fns/two')).status).toBe(200);
    expect(await metric('weft_fn_cold_starts_total', { fn: 'brief.fns' })).toBe(starts + 1);
    expect(await metric('weft_fn_cold_starts_total', { fn: 'brief.fns', kind: 'cold' })).toBeGreaterThanOrEqual(1);
  });

  it('keeps a burst during a cold start within maxInstances (each queued request used to start its own instance)', async () => {
    expect((await viaProxy('http://coldburst.fns/first')).status).toBe(200);
    await eventually(async () => (await metric('weft_fn_modules_loaded', { fn: 'coldburst.fns' })) === 0);
    const before = await metric('weft_fn_cold_starts_total', { fn: 'coldburst.fns' });
    const answers = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => viaProxy(`http://coldburst.fns/burst-${i}`)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect((await metric('weft_fn_cold_starts_total', { fn: 'coldburst.fns' })) - before).toBeLessThanOrEqual(2);
  }, 120_000);

  it("gives an instance's first request at least 1 s of CPU: V8 compiles the guest lazily on that call", async () => {
    // A SpiderMonkey guest's first call costs far more than 1 ms of CPU; with cpuMs: 1 applied to it, the answer would be
    // a 500 WEFT_ERR_FN_CPU (or, when the kill came after the answer, the warmed instance would be discarded).
    expect((await viaProxy('http://firstcall.fns/')).status).toBe(200);
    await eventually(async () => (await metric('weft_fn_requests_total', { fn: 'firstcall.fns' })) >= 1);
    expect(await metric('weft_fn_evictions_total', { fn: 'firstcall.fns', reason: 'cpu' })).toBe(0);
    expect(await metric('weft_fn_instances', { fn: 'firstcall.fns' })).toBe(1);
  });

  it('recycles an instance after maxRequestsPerInstance with its successor started beside it, so no request waits for the start', async () => {
    for (let i = 0; i < 3; i++) expect((await viaProxy(`http://recycler.fns/r${i}`)).status).toBe(200);
    // The third request reached the limit: the successor starts while the old instance still serves, and the old one
    // goes once the successor is up.
    await eventually(async () => (await metric('weft_fn_evictions_total', { fn: 'recycler.fns', reason: 'recycled' })) === 1 && (await metric('weft_fn_instances', { fn: 'recycler.fns' })) === 1);
    const starts = await metric('weft_fn_cold_starts_total', { fn: 'recycler.fns' });
    expect(starts).toBe(2);
    expect((await viaProxy('http://recycler.fns/after')).status).toBe(200);
    expect(await metric('weft_fn_cold_starts_total', { fn: 'recycler.fns' })).toBe(starts);
    // Under a burst every request is answered while instances recycle (an instance serves on while its successor starts).
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => viaProxy(`http://recycler.fns/stream-${i}`)));
    expect(answers.map((a) => a.status)).toEqual(Array.from({ length: 12 }, () => 200));
    await eventually(async () => (await metric('weft_fn_evictions_total', { fn: 'recycler.fns', reason: 'recycled' })) >= 2);
  }, 120_000);

  it('queues a burst beyond its instances, then answers 503 past the queue bound', async () => {
    expect((await viaProxy('http://slow.fns/warm')).status).toBe(200);
    // The instance is idle again once its request is counted (the worker's 'done' may trail the response's end).
    await eventually(async () => (await metric('weft_fn_requests_total', { fn: 'slow.fns' })) >= 1);
    // One instance, a queue of two: one request runs, two wait, the fourth finds no capacity.
    const answers = await Promise.all([1, 2, 3, 4].map((i) => viaProxy(`http://slow.fns/sleep?ms=1500&i=${i}`)));
    const statuses = answers.map((a) => a.status).sort();
    // On a failure the message names each refusal's reason (overloaded, queue timeout, a lost instance).
    expect(statuses, JSON.stringify(answers.map((a) => [a.status, a.headers['x-weft-error'], a.body.slice(0, 120)]))).toEqual([200, 200, 200, 503]);
    const refused = answers.find((a) => a.status === 503) as Answer;
    expect(refused.headers['x-weft-error']).toBe('WEFT_ERR_FN_OVERLOADED');
    expect(await metric('weft_fn_rejected_total', { fn: 'slow.fns', reason: 'overloaded' })).toBeGreaterThanOrEqual(1);
    expect(await metric('weft_fn_instances', { fn: 'slow.fns' })).toBe(1);
  });
});

describe('limits', () => {
  it.each([
    ['/loop', 500, 'WEFT_ERR_FN_CPU', 'cpu'],
    ['/bomb', 500, 'WEFT_ERR_FN_MEMORY', 'memory'],
    ['/trap', 500, 'WEFT_ERR_FN_TRAP', 'trap'],
    ['/sleep?ms=20000', 504, 'WEFT_ERR_FN_TIMEOUT', 'timeout'],
  ])('%s is stopped, reported and followed by a good request', async (path, status, code, reason) => {
    const before = await metric('weft_fn_evictions_total', { fn: 'lab.fns', reason });
    const bad = await viaProxy(`http://lab.fns${path}`);
    expect(bad.status).toBe(status);
    expect(bad.headers['x-weft-error']).toBe(code);
    expect(await metric('weft_fn_evictions_total', { fn: 'lab.fns', reason })).toBe(before + 1);
    expect(w.logs.some((l) => l.msg === 'function instance discarded' && l.fn === 'lab.fns' && l.reason === reason)).toBe(true);
    expect(await viaProxy('http://lab.fns/after')).toMatchObject({ status: 200, body: 'lab /after\n' });
  });

  it('keeps the event loop free while a function spins', async () => {
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const spin = viaProxy('http://lab.fns/loop');
    const plainAnswers: number[] = [];
    // Plain L7 traffic on the same node while the guest burns its whole CPU budget in a worker thread.
    for (let i = 0; i < 20; i++) plainAnswers.push((await viaProxy('http://plain.default/')).status);
    expect((await spin).headers['x-weft-error']).toBe('WEFT_ERR_FN_CPU');
    lag.disable();
    expect(plainAnswers.every((s) => s === 200)).toBe(true);
    // A guest on the main thread would have stalled the loop for the whole 300 ms budget.
    expect(lag.max / 1e6).toBeLessThan(250);
  });
});

describe('bodies, logs and environment', () => {
  it('streams a POST body through the function and back in windows', async () => {
    // 8 MiB fits the 64 MiB cap: SpiderMonkey keeps the chunks it read until its own GC (see the README's Streaming).
    const size = 8 * 1024 * 1024;
    const body = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4096) body.writeUInt32BE(i, i);
    const res = await new Promise<{ status: number; sha: string; length: number }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: w.app.ports.explicitProxy, method: 'POST', path: 'http://bulk.fns/echo', headers: { host: 'bulk.fns', 'content-length': size }, agent: false }, (r) => {
        const hash = createHash('sha256');
        let length = 0;
        r.on('data', (c: Buffer) => {
          hash.update(c);
          length += c.length;
        });
        r.on('end', () => resolve({ status: r.statusCode ?? 0, sha: hash.digest('hex'), length }));
      });
      req.on('error', reject);
      req.end(body);
    });
    expect(res).toEqual({ status: 200, sha: createHash('sha256').update(body).digest('hex'), length: size });
    // The guest stayed under its 64 MiB cap.
    expect(await metric('weft_fn_instance_memory_bytes', { fn: 'bulk.fns' })).toBeLessThanOrEqual(64 * 1024 * 1024);
  }, 300_000);

  it('streams a 100 MB POST through a splicing function, never holding it whole', async () => {
    // wasi:io splice moves the bytes host to host: the guest's memory stays under its 24 MiB cap, weft's heap flat.
    const size = 100 * 1024 * 1024;
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let length = 0;
    const heapBefore = process.memoryUsage().heapUsed;
    let peakHeap = heapBefore;
    const chunkAt = (offset: number): Buffer => {
      const chunk = Buffer.alloc(65536);
      chunk.writeUInt32BE(offset, 0);
      sent.update(chunk);
      return chunk;
    };
    const res = await postStream('http://tight.fns/splice', size, chunkAt, (c) => {
      got.update(c);
      length += c.length;
      peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
    });
    expect({ res, sha: got.digest('hex'), length }).toEqual({ res: { status: 200 }, sha: sent.digest('hex'), length: size });
    expect(await metric('weft_fn_instance_memory_bytes', { fn: 'tight.fns' })).toBeLessThanOrEqual(24 * 1024 * 1024);
    expect(peakHeap - heapBefore).toBeLessThan(32 * 1024 * 1024);
  }, 600_000);

  it('resets the client when the instance fails mid-response (it stalled: a duplexPair end reads as EOF)', async () => {
    // A 32 MiB echo through a 24 MiB cap: the guest traps in cabi_realloc after some MiB were already answered.
    const heapBefore = process.memoryUsage().heapUsed;
    let peakHeap = heapBefore;
    const chunk = Buffer.alloc(65536, 7);
    const outcome = await postStream('http://tight.fns/echo', 32 * 1024 * 1024, () => chunk, () => (peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)));
    expect(outcome).toBe('reset');
    await eventually(async () => (await metric('weft_fn_evictions_total', { fn: 'tight.fns', reason: 'memory' })) === 1);
    // Never held whole on weft's side: the main thread's heap grew by far less than the 32 MiB that went through.
    expect(peakHeap - heapBefore).toBeLessThan(16 * 1024 * 1024);
  }, 300_000);

  it("sends the guest's stdout and stderr to weft's log, tagged with the function and request id", async () => {
    const res = await viaProxy('http://lab.fns/log?tag=t1', { headers: { 'x-request-id': 'req-42' } });
    expect(res.status).toBe(200);
    await eventually(() => Promise.resolve(w.logs.some((l) => l.msg === 'function output' && l.line === 'log line for t1')));
    expect(w.logs.find((l) => l.line === 'log line for t1')).toMatchObject({ fn: 'lab.fns', request_id: 'req-42', stream: 'stdout' });
    expect(w.logs.find((l) => l.line === 'an error line' && l.request_id === 'req-42')).toMatchObject({ stream: 'stderr' });
  });
});

describe('outbound wasi:http through the mesh', () => {
  it('refuses a host outside allowedOutboundHosts and logs the entry to add', async () => {
    const res = await viaProxy(`http://lab.fns/fetch?url=${encodeURIComponent('http://plain.default/')}`);
    expect(res.status).toBe(200);
    expect(res.body).toContain('HTTP-request-denied');
    expect(w.logs.find((l) => l.msg === 'function outbound request refused: destination not in allowedOutboundHosts')).toMatchObject({ fn: 'lab.fns', destination: 'http://plain.default', add: 'allowedOutboundHosts: ["http://plain.default"]' });
    expect(await metric('weft_fn_outbound_requests_total', { fn: 'lab.fns', result: 'denied' })).toBeGreaterThanOrEqual(1);
  });

  it("reaches a meshed service with the function's identity, under the destination's authorization policy", async () => {
    const onlyCaller = { name: 'only-caller', namespace: 'default', action: 'ALLOW', targetRef: { kind: 'Service', name: 'plain' }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/fns/sa/caller'] } }] }] };
    expect(await w.app.reload(testConfig({ ...currentRaw, policies: [onlyCaller] }))).toEqual({ ok: true });
    try {
      const allowed = await viaProxy(`http://caller.fns/fetch?url=${encodeURIComponent('http://plain.default/who')}`);
      expect(allowed).toMatchObject({ status: 200, body: '200 plain' });
      // The request entered the L7 path as the function's workload: its SPIFFE identity is the source principal.
      expect(await w.waitForLog((e) => e.path === '/who' && e.destination_service === 'plain.default.svc.cluster.local')).toMatchObject({ response_code: 200, source_principal: 'spiffe://cluster.local/ns/fns/sa/caller' });
      // Another function, allowed by its own allowlist, is still denied by the destination's policy.
      const denied = await viaProxy(`http://other.fns/fetch?url=${encodeURIComponent('http://plain.default/who-else')}`);
      expect(denied.status).toBe(200);
      expect(denied.body).toMatch(/^403 /);
      expect(await w.waitForLog((e) => e.path === '/who-else')).toMatchObject({ response_code: 403, source_principal: 'spiffe://cluster.local/ns/fns/sa/other' });
    } finally {
      expect(await w.app.reload(testConfig(currentRaw))).toEqual({ ok: true });
    }
  });
});
