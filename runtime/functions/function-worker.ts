/**
 * The body of one function instance's worker thread: instantiate the transpiled component once with weft's WASI
 * host, then serve requests one at a time, blocking in Atomics.wait between and inside them (WASI 0.2 is
 * synchronous). A trap, a memory overrun or exit() ends the instance: it reports and the pool discards the thread.
 */
import { readlinkSync } from 'node:fs';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { receiveBlocking } from './blocking-port.js';
import type { FailureReason, FromWorker, ToWorker } from './function-messages.js';
import { createWasiHttp } from './wasi-http.js';
import { ExitRequested, LineSink, wasiImports } from './wasi-imports.js';
import { ByteQueue, installPump } from './wasi-io.js';

export interface InstanceData {
  /** file: URL of the transpiled component's JS (jco --instantiation sync). */
  jsUrl: string;
  /** Compiled core modules by the file name the JS asks for. */
  modules: Record<string, WebAssembly.Module>;
  env: [string, string][];
  port: MessagePort;
  signal: SharedArrayBuffer;
  memoryCapBytes: number;
}

type Instantiate = (getCoreModule: (name: string) => WebAssembly.Module, imports: Record<string, unknown>, instantiateCore?: (m: WebAssembly.Module, i: WebAssembly.Imports) => WebAssembly.Instance) => Record<string, unknown>;
type Handler = { handle: (request: unknown, out: unknown) => void };

const data = workerData as InstanceData;
const parent = parentPort as NonNullable<typeof parentPort>;
const signal = new Int32Array(data.signal);
const post = (m: FromWorker, transfer?: ArrayBuffer[]): void => parent.postMessage(m, transfer);

let current = 0;
let currentRequestId = '';
const bodies = new Map<number, ByteQueue>();
const http = createWasiHttp({ post, currentRequestId: () => current });
let outparam: InstanceType<typeof http.ResponseOutparam> | undefined;
const pendingRequests: Extract<ToWorker, { t: 'req' }>[] = [];

function dispatch(m: ToWorker): void {
  switch (m.t) {
    case 'req':
      pendingRequests.push(m);
      return;
    case 'req-body':
      bodies.get(m.id)?.push(m.chunk);
      return;
    case 'req-end': {
      const q = bodies.get(m.id);
      if (q !== undefined) q.ended = true;
      return;
    }
    case 'req-abort': {
      const q = bodies.get(m.id);
      if (q !== undefined) q.failure = 'the client went away';
      if (outparam?.id === m.id && outparam.body !== undefined) outparam.body.sink.failure = 'the client went away';
      return;
    }
    case 'res-ack':
      if (outparam?.id === m.id) outparam.body?.sink.ack(m.bytes);
      return;
    case 'out-head': {
      const o = http.outbound.get(m.oid);
      if (o !== undefined) o.response.head = { status: m.status, headers: m.headers };
      return;
    }
    case 'out-body':
      http.outbound.get(m.oid)?.response.body.push(m.chunk);
      return;
    case 'out-end': {
      const o = http.outbound.get(m.oid);
      if (o !== undefined) o.response.body.ended = true;
      return;
    }
    case 'out-error': {
      const o = http.outbound.get(m.oid);
      if (o === undefined) return;
      if (o.response.head === undefined) o.response.error = { code: m.code, message: m.message };
      else o.response.body.failure = m.message;
      o.sink.failure = m.message;
      return;
    }
    case 'out-ack':
      http.outbound.get(m.oid)?.sink.ack(m.bytes);
      return;
  }
}

installPump((timeoutMs) => {
  const m = receiveBlocking<ToWorker>(data.port, signal, timeoutMs);
  if (m !== undefined) dispatch(m);
});

const memories: WebAssembly.Memory[] = [];
const memoryBytes = (): number => memories.reduce((a, m) => a + m.buffer.byteLength, 0);
const stdout = new LineSink((line) => post({ t: 'log', id: current, stream: 'stdout', line }));
const stderr = new LineSink((line) => post({ t: 'log', id: current, stream: 'stderr', line }));

function classify(err: unknown): { reason: FailureReason; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ExitRequested) return { reason: 'exit', message };
  // A memory.grow refused at the cap surfaces as the guest's own out-of-memory trap (or a RangeError in the glue);
  // allocators grow in steps, so "at the cap" means within the last eighth of it.
  const used = memoryBytes();
  if (err instanceof RangeError || used >= data.memoryCapBytes * 0.875) return { reason: 'memory', message: `${message} (linear memory ${(used / 1048576).toFixed(1)} MiB of ${(data.memoryCapBytes / 1048576).toFixed(0)} MiB)` };
  return { reason: 'trap', message: `${message} (linear memory ${(used / 1048576).toFixed(1)} MiB)` };
}

function serve(req: Extract<ToWorker, { t: 'req' }>, handler: Handler): boolean {
  current = req.id;
  currentRequestId = req.requestId;
  const body = new ByteQueue();
  body.onConsume = (bytes) => post({ t: 'req-ack', id: req.id, bytes });
  bodies.set(req.id, body);
  const incoming = new http.IncomingRequest(req.method, req.pathWithQuery, req.scheme, req.authority, req.headers, body);
  const out = new http.ResponseOutparam(req.id);
  outparam = out;
  let failed: { reason: FailureReason; message: string } | undefined;
  try {
    handler.handle(incoming, out);
  } catch (err) {
    failed = classify(err);
  }
  stdout.flushLine();
  stderr.flushLine();
  if (out.body !== undefined && !out.body.finished) post({ t: 'res-end', id: req.id, complete: false });
  bodies.delete(req.id);
  outparam = undefined;
  post({ t: 'done', id: req.id, memoryBytes: memoryBytes(), ...(failed === undefined ? {} : { failed }) });
  return failed === undefined;
}

async function main(): Promise<void> {
  const started = performance.now();
  let handler: Handler;
  try {
    const mod = (await import(data.jsUrl)) as { instantiate: Instantiate };
    const imports = wasiImports(http, { env: () => [...data.env, ['REQUEST_ID', currentRequestId]], stdout, stderr });
    const exports = mod.instantiate(
      (name) => {
        const m = data.modules[name];
        if (m === undefined) throw new Error(`the component asks for core module ${name}, which admission did not produce`);
        return m;
      },
      imports,
      (module, importObject) => {
        const instance = new WebAssembly.Instance(module, importObject);
        for (const e of Object.values(instance.exports)) if (e instanceof WebAssembly.Memory) memories.push(e);
        return instance;
      },
    );
    handler = exports.incomingHandler as Handler;
  } catch (err) {
    post({ t: 'init-failed', message: err instanceof Error ? err.message : String(err) });
    return;
  }
  // The OS thread id, so the pool can read this thread's CPU time from /proc while the guest runs.
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  post({ t: 'ready', tid, memoryBytes: memoryBytes(), instantiateMs: performance.now() - started });
  for (;;) {
    const m = pendingRequests.shift() ?? receiveBlocking<ToWorker>(data.port, signal, Infinity);
    if (m === undefined) continue;
    if (m.t !== 'req') {
      dispatch(m);
      continue;
    }
    if (!serve(m, handler)) return;
  }
}

await main();
