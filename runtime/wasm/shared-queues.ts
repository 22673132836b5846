/** Node-local shared queues keyed by (vm_id, name): any VM may enqueue or dequeue, the registering root context hears on_queue_ready. */
import { Status, type StatusCode } from './abi-constants.js';

export interface QueueOwner {
  /** Called (never re-entrantly) after an enqueue; the owner decides whether it is still alive. */
  notify(token: number): void;
}

interface Queue {
  vmId: string;
  name: string;
  items: Uint8Array[];
  owner: QueueOwner;
}

/** Unbounded queues would let one plugin exhaust node memory; cpp-host has no cap, Envoy users hit it as OOM. */
export const MAX_QUEUE_ITEMS = 10_000;

export class SharedQueues {
  readonly #byToken = new Map<number, Queue>();
  readonly #byName = new Map<string, number>();
  #nextToken = 1;

  register(vmId: string, name: string, owner: QueueOwner): number {
    const key = `${vmId}\0${name}`;
    const existing = this.#byName.get(key);
    if (existing !== undefined) {
      this.#byToken.get(existing)!.owner = owner;
      return existing;
    }
    const token = this.#nextToken++;
    this.#byToken.set(token, { vmId, name, items: [], owner });
    this.#byName.set(key, token);
    return token;
  }

  resolve(vmId: string, name: string): number | undefined {
    return this.#byName.get(`${vmId}\0${name}`);
  }

  enqueue(token: number, value: Uint8Array): StatusCode {
    const q = this.#byToken.get(token);
    if (q === undefined) return Status.NotFound;
    if (q.items.length >= MAX_QUEUE_ITEMS) return Status.InternalFailure;
    q.items.push(value);
    const owner = q.owner;
    queueMicrotask(() => owner.notify(token));
    return Status.Ok;
  }

  dequeue(token: number): Uint8Array | StatusCode {
    const q = this.#byToken.get(token);
    if (q === undefined) return Status.NotFound;
    return q.items.shift() ?? Status.Empty;
  }
}
