/** Request/response and one-way notes over a worker thread's message port, both directions alike; what each side answers is up to the primary and the worker. */
import type { MessagePort, Worker } from 'node:worker_threads';
import { WeftError } from '../errors.js';

type Port = Pick<MessagePort | Worker, 'postMessage' | 'on' | 'off'>;
type Handler = (payload: unknown) => unknown;

interface Envelope {
  rpc: 'call' | 'reply' | 'note';
  seq?: number;
  method: string;
  payload?: unknown;
  error?: string;
}

function isEnvelope(m: unknown): m is Envelope {
  return typeof m === 'object' && m !== null && typeof (m as Envelope).rpc === 'string' && typeof (m as Envelope).method === 'string';
}

export class WorkerRpc {
  readonly #port: Port;
  readonly #handlers = new Map<string, Handler>();
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #seq = 0;
  readonly #onMessage = (m: unknown): void => this.#receive(m);

  constructor(port: Port) {
    this.#port = port;
    port.on('message', this.#onMessage);
  }

  /** Answers calls (and notes) named `method`; a thrown error or rejection goes back to the caller as its message. */
  handle(method: string, handler: Handler): void {
    this.#handlers.set(method, handler);
  }

  call<T>(method: string, payload?: unknown): Promise<T> {
    const seq = ++this.#seq;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.#port.postMessage({ rpc: 'call', seq, method, payload } satisfies Envelope);
    });
  }

  /** One-way: nobody answers (access-log batches, breaker changes). */
  note(method: string, payload?: unknown): void {
    this.#port.postMessage({ rpc: 'note', method, payload } satisfies Envelope);
  }

  /** Fails every call still waiting (the other side exited). */
  fail(reason: string): void {
    for (const p of this.#pending.values()) p.reject(new WeftError('WEFT_ERR_WORKER', reason));
    this.#pending.clear();
  }

  close(): void {
    this.#port.off('message', this.#onMessage);
    this.fail('the message channel closed');
  }

  #receive(m: unknown): void {
    if (!isEnvelope(m)) return;
    if (m.rpc === 'reply') {
      const p = this.#pending.get(m.seq ?? -1);
      if (p === undefined) return;
      this.#pending.delete(m.seq ?? -1);
      if (m.error !== undefined) p.reject(new WeftError('WEFT_ERR_WORKER', m.error));
      else p.resolve(m.payload);
      return;
    }
    const handler = this.#handlers.get(m.method);
    if (m.rpc === 'note') {
      handler?.(m.payload);
      return;
    }
    const reply = (payload: unknown, error?: string): void =>
      this.#port.postMessage({ rpc: 'reply', seq: m.seq, method: m.method, payload, ...(error === undefined ? {} : { error }) } satisfies Envelope);
    if (handler === undefined) return reply(undefined, `no handler for "${m.method}"`);
    Promise.resolve()
      .then(() => handler(m.payload))
      .then((v) => reply(v), (err: unknown) => reply(undefined, (err as Error).message ?? String(err)));
  }
}
