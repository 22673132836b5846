/**
 * One request served by one function instance: streams the request body to the worker and the response back with a
 * bounded window each way, enforces the CPU budget (thread CPU from /proc) and the wall timeout, and turns a
 * guest failure into a weft-generated answer. It reports the outcome to the pool once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FailureReason, FromWorker, HeaderPairs } from './function-messages.js';
import { STREAM_WINDOW_BYTES } from './function-messages.js';
import type { FunctionInstance } from './function-instance.js';

export interface ExchangeLimits {
  cpuMs: number;
  timeoutMs: number;
}

export interface ExchangeOutcome {
  status: number;
  /** Set when the instance must be discarded. */
  failure: { reason: FailureReason; message: string } | undefined;
}

export interface ExchangeHooks {
  log(stream: 'stdout' | 'stderr', line: string): void;
  outbound(m: Extract<FromWorker, { t: 'out-req' | 'out-body' | 'out-end' | 'out-drop' | 'out-ack' }>): void;
  /** Called once; the instance is idle again unless `failure` is set. */
  done(outcome: ExchangeOutcome): void;
}

const FAILURE_ANSWER: Record<FailureReason, { status: number; code: string; text: string }> = {
  trap: { status: 500, code: 'WEFT_ERR_FN_TRAP', text: 'the function trapped' },
  memory: { status: 500, code: 'WEFT_ERR_FN_MEMORY', text: 'the function exceeded its memory limit' },
  cpu: { status: 500, code: 'WEFT_ERR_FN_CPU', text: 'the function exceeded its CPU budget' },
  timeout: { status: 504, code: 'WEFT_ERR_FN_TIMEOUT', text: 'the function did not answer within its timeout' },
  exit: { status: 500, code: 'WEFT_ERR_FN_TRAP', text: 'the function exited' },
};

/** A response weft writes itself, with its marker header. */
export function localAnswer(res: ServerResponse, status: number, code: string, text: string): void {
  if (res.headersSent) {
    // Too late for an answer: the response is cut. An in-process connection (function-host.ts) must be aborted from
    // the client side too, since destroying one end of a duplexPair reads as a clean EOF at the other.
    const abort = (res.socket as { weftAbort?: () => void } | null)?.weftAbort;
    res.destroy();
    abort?.();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain', 'x-weft-error': code, 'content-length': Buffer.byteLength(text) + 1 });
  res.end(`${text}\n`);
}

/** Request headers as the guest sees them: lower-case names, hop-by-hop ones left to the host. */
function headerPairs(req: IncomingMessage): HeaderPairs {
  const raw = req.rawHeaders;
  const out: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([(raw[i] as string).toLowerCase(), raw[i + 1] as string]);
  return out;
}

let nextId = 1;

/** A running exchange; `fail` ends it when its instance died under it. */
export interface Exchange {
  fail(failure: { reason: FailureReason; message: string }): void;
}

export function runExchange(instance: FunctionInstance, req: IncomingMessage, res: ServerResponse, requestId: string, limits: ExchangeLimits, hooks: ExchangeHooks): Exchange {
  const id = nextId++;
  let finished = false;
  let reqInFlight = 0;
  let paused = false;
  const cpuStart = instance.cpuMs();
  let cpuTimer: NodeJS.Timeout | undefined;

  const finish = (failure: ExchangeOutcome['failure']): void => {
    if (finished) return;
    finished = true;
    clearTimeout(wallTimer);
    clearTimeout(cpuTimer);
    instance.onMessage = undefined;
    req.off('data', onData);
    req.off('end', onEnd);
    res.off('close', onClose);
    if (failure !== undefined) {
      const answer = FAILURE_ANSWER[failure.reason];
      localAnswer(res, answer.status, answer.code, answer.text);
      // The body the guest did not read stays unread; the connection cannot be reused for the next request.
      if (!req.complete) req.resume();
    } else if (!res.writableEnded && !res.headersSent) {
      localAnswer(res, 500, 'WEFT_ERR_FN_TRAP', 'the function returned without setting a response');
    }
    hooks.done({ status: res.statusCode, failure });
  };

  const kill = (reason: FailureReason, message: string): void => {
    instance.kill();
    finish({ reason, message });
  };

  const wallTimer = setTimeout(() => kill('timeout', `no complete answer within ${limits.timeoutMs} ms`), limits.timeoutMs);
  // Thread CPU never exceeds wall time, so the first check can wait the whole budget; later ones wait what is left.
  const checkCpu = (): void => {
    const now = instance.cpuMs();
    if (now === undefined || cpuStart === undefined) return;
    const used = now - cpuStart;
    if (used >= limits.cpuMs) kill('cpu', `used ${used.toFixed(1)} ms of CPU, over its ${limits.cpuMs} ms budget`);
    else cpuTimer = setTimeout(checkCpu, Math.max(2, limits.cpuMs - used));
  };
  if (cpuStart !== undefined) cpuTimer = setTimeout(checkCpu, limits.cpuMs);

  const onData = (chunk: Buffer): void => {
    const copy = new Uint8Array(chunk);
    reqInFlight += copy.length;
    instance.send({ t: 'req-body', id, chunk: copy }, [copy.buffer]);
    if (reqInFlight >= STREAM_WINDOW_BYTES && !paused) {
      paused = true;
      req.pause();
    }
  };
  const onEnd = (): void => instance.send({ t: 'req-end', id });
  const onClose = (): void => {
    if (!res.writableFinished) instance.send({ t: 'req-abort', id });
  };

  instance.onMessage = (m) => {
    switch (m.t) {
      case 'req-ack':
        if (m.id !== id) return;
        reqInFlight -= m.bytes;
        if (paused && reqInFlight < STREAM_WINDOW_BYTES / 2) {
          paused = false;
          req.resume();
        }
        return;
      case 'res-head': {
        const headers: Record<string, string[]> = {};
        for (const [n, v] of m.headers) (headers[n] ??= []).push(v);
        res.writeHead(m.status, headers);
        return;
      }
      case 'res-body': {
        const bytes = m.chunk.length;
        res.write(m.chunk, () => instance.send({ t: 'res-ack', id, bytes }));
        return;
      }
      case 'res-end':
        if (m.complete) res.end();
        else res.destroy();
        return;
      case 'log':
        hooks.log(m.stream, m.line);
        return;
      case 'done':
        instance.memoryBytes = m.memoryBytes;
        if (m.failed !== undefined) {
          instance.kill();
          finish(m.failed);
        } else finish(undefined);
        return;
      case 'out-req':
      case 'out-body':
      case 'out-end':
      case 'out-drop':
      case 'out-ack':
        hooks.outbound(m);
        return;
      default:
        return;
    }
  };

  req.on('data', onData);
  req.on('end', onEnd);
  res.on('close', onClose);
  const host = req.headers.host ?? '';
  instance.send({ t: 'req', id, requestId, method: req.method ?? 'GET', pathWithQuery: req.url ?? '/', scheme: 'http', authority: host, headers: headerPairs(req) });
  // `complete` only says the parser has the whole body; its bytes still come as 'data' before 'end'.
  if (req.readableEnded) onEnd();
  return { fail: (failure) => kill(failure.reason, failure.message) };
}

/** Called by the pool when the instance dies mid-request (worker error or exit). */
export function failingExchange(reason: string): { reason: FailureReason; message: string } {
  return reason === 'memory' ? { reason: 'memory', message: 'the worker ran out of memory' } : { reason: 'exit', message: reason };
}
