/**
 * A MessagePort the worker reads synchronously: the guest's WASI 0.2 calls block (wasi:io/poll), so the worker waits
 * in Atomics.wait on a shared counter the main thread bumps after each post, then drains the port with
 * receiveMessageOnPort. The worker's own event loop never runs while an instance lives.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';

/** Main side: post, then wake the worker. */
export class WakingPort<T> {
  readonly #port: MessagePort;
  readonly #signal: Int32Array;

  constructor(port: MessagePort, signal: Int32Array) {
    this.#port = port;
    this.#signal = signal;
  }

  post(message: T, transfer?: readonly ArrayBuffer[]): void {
    this.#port.postMessage(message, transfer as ArrayBuffer[] | undefined);
    Atomics.add(this.#signal, 0, 1);
    Atomics.notify(this.#signal, 0);
  }

  close(): void {
    this.#port.close();
  }
}

/** Worker side: the next message, waiting at most `timeoutMs` (Infinity: until one comes); undefined on timeout. */
export function receiveBlocking<T>(port: MessagePort, signal: Int32Array, timeoutMs: number): T | undefined {
  const deadline = timeoutMs === Infinity ? Infinity : performance.now() + timeoutMs;
  for (;;) {
    const seen = Atomics.load(signal, 0);
    const got = receiveMessageOnPort(port);
    if (got !== undefined) return got.message as T;
    const left = deadline === Infinity ? Infinity : deadline - performance.now();
    if (left <= 0) return undefined;
    // A post between the load and here bumped the counter, so the wait returns at once ('not-equal').
    Atomics.wait(signal, 0, seen, left);
  }
}
