/** Node-local shared key/value store for plugins, partitioned by vm_id, with compare-and-swap tokens like cpp-host's SharedData. */
import { Status, type StatusCode } from './abi-constants.js';

interface Entry {
  value: Uint8Array;
  cas: number;
}

export class SharedData {
  readonly #byVm = new Map<string, Map<string, Entry>>();
  #nextCas = 0;

  /** Never 0: a CAS of 0 means "unconditional" on the way in. */
  #cas(): number {
    this.#nextCas = (this.#nextCas % 0xffffffff) + 1;
    return this.#nextCas;
  }

  get(vmId: string, key: string): Entry | undefined {
    return this.#byVm.get(vmId)?.get(key);
  }

  set(vmId: string, key: string, value: Uint8Array, cas: number): StatusCode {
    let map = this.#byVm.get(vmId);
    if (map === undefined) {
      map = new Map<string, Entry>();
      this.#byVm.set(vmId, map);
    }
    const existing = map.get(key);
    if (cas !== 0 && existing !== undefined && existing.cas !== cas) return Status.CasMismatch;
    map.set(key, { value, cas: this.#cas() });
    return Status.Ok;
  }
}
