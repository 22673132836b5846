/** Holds the current StateSnapshot and swaps it atomically on reload; readers take `current` once per connection and keep that view. */
import type { WeftConfig } from '../config/config-schema.js';
import { StateSnapshot, type WorkloadChange } from './state-snapshot.js';

export type StateListener = (next: StateSnapshot, previous: StateSnapshot) => void;

export class ProxyState {
  #current: StateSnapshot;
  #version = 1;
  readonly #listeners = new Set<StateListener>();

  constructor(config: WeftConfig) {
    this.#current = new StateSnapshot(config, this.#version);
  }

  get current(): StateSnapshot {
    return this.#current;
  }

  /** Replaces the snapshot; listeners (policy re-checks, plugin reloads) run after the swap. */
  update(config: WeftConfig): StateSnapshot {
    const previous = this.#current;
    this.#current = new StateSnapshot(config, ++this.#version);
    for (const listener of this.#listeners) listener(this.#current, previous);
    return this.#current;
  }

  /** Swaps in a snapshot derived from the current one by a workload change (no rebuild); listeners run as on update. */
  patch(change: WorkloadChange): StateSnapshot {
    const previous = this.#current;
    this.#current = StateSnapshot.derive(previous, change, ++this.#version);
    for (const listener of this.#listeners) listener(this.#current, previous);
    return this.#current;
  }

  onUpdate(listener: StateListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
