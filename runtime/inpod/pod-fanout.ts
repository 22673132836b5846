/**
 * In-pod capture with several worker threads: the primary owns the one ZDS connection and each pod's netns fd, and every
 * worker binds the pod's ports inside its namespace with SO_REUSEPORT (the kernel spreads the pod's connections over
 * them), so no worker relays another's traffic. The ACK to the agent waits for every worker; a replaced worker gets
 * every pod before it takes pod traffic.
 */
import { createLogger } from '../log.js';
import { WeftError } from '../errors.js';
import type { InpodConfig } from '../config/config-schema.js';
import { closeFd, netnsIdOf } from '../native/weft-netns.js';
import type { WorkerRpc } from '../workers/worker-rpc.js';
import type { PodDump, PodProxies } from './pod-proxies.js';
import { ZdsClient, type ZdsHandler } from './zds-client.js';
import type { WorkloadInfo } from './zds-codec.js';

const log = createLogger('inpod');

export const INPOD_ADD_RPC = 'inpod-add';
export const INPOD_DEL_RPC = 'inpod-del';

/** The primary's view of its workers, for the fan-out. */
export interface PodWorkers {
  /** Ids of the workers serving now. */
  live(): number[];
  call<T>(id: number, method: string, payload: unknown): Promise<T>;
}

interface FannedPod {
  uid: string;
  info: WorkloadInfo | undefined;
  /** The primary's descriptor, lent to every worker by number (threads share the fd table) and closed here last. */
  netnsFd: number;
  netnsId: string;
  /** Workers whose listeners are bound in the pod. */
  workers: Set<number>;
  dump: PodDump | undefined;
}

export class PodFanout implements ZdsHandler {
  readonly zds: ZdsClient;
  readonly #workers: PodWorkers;
  readonly #pods = new Map<string, FannedPod>();
  /** ZDS requests and worker replays one at a time, so a worker starting mid-add still ends with every pod. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(config: InpodConfig, workers: PodWorkers) {
    this.#workers = workers;
    this.zds = new ZdsClient({ path: config.socket, handler: this });
  }

  start(): void {
    this.zds.start();
  }

  add(uid: string, info: WorkloadInfo | undefined, netnsFd: number): Promise<void> {
    return this.#serial(async () => {
      const netnsId = netnsIdOf(netnsFd);
      const existing = this.#pods.get(uid);
      if (existing !== undefined && existing.netnsId === netnsId) {
        // A replay after reconnecting: every worker already serves this namespace.
        closeFd(netnsFd);
        return;
      }
      if (existing !== undefined) await this.#delete(existing);
      const pod: FannedPod = { uid, info, netnsFd, netnsId, workers: new Set(), dump: undefined };
      const results = await Promise.allSettled(this.#workers.live().map((id) => this.#addTo(pod, id)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined || pod.workers.size === 0) {
        await this.#delete(pod);
        throw failed === undefined ? new WeftError('WEFT_ERR_WORKER', `no worker is serving to capture pod ${uid}`) : (failed.reason as Error);
      }
      this.#pods.set(uid, pod);
    });
  }

  delete(uid: string): Promise<boolean> {
    return this.#serial(async () => {
      const pod = this.#pods.get(uid);
      if (pod === undefined) return false;
      await this.#delete(pod);
      return true;
    });
  }

  retainOnly(keep: ReadonlySet<string>): Promise<string[]> {
    return this.#serial(async () => {
      const dropped = [...this.#pods.values()].filter((p) => !keep.has(p.uid));
      for (const pod of dropped) await this.#delete(pod);
      return dropped.map((p) => p.uid);
    });
  }

  /** Worker `id` (re)started serving: its predecessor's listeners died with it; it binds every pod's ports now. */
  workerStarted(id: number): Promise<void> {
    return this.#serial(async () => {
      for (const pod of this.#pods.values()) {
        pod.workers.delete(id);
        await this.#addTo(pod, id).catch((err: unknown) => log.error({ uid: pod.uid, worker: id, error: (err as Error).message }, 'worker could not bind the pod ports; the other workers serve it'));
      }
    });
  }

  /** Leaves the agent (drain: it replays to the next runtime); the pods' fds stay until close(). */
  stop(): void {
    this.zds.stop();
  }

  /** After the workers are gone: the primary's descriptors. */
  close(): void {
    this.zds.stop();
    for (const pod of this.#pods.values()) closeFd(pod.netnsFd);
    this.#pods.clear();
  }

  dump(): unknown {
    return {
      agent: this.zds.dump(),
      pods: [...this.#pods.values()].map((p) => ({ ...(p.dump ?? { uid: p.uid, netns: p.netnsId }), workers: [...p.workers].sort((x, y) => x - y) })),
    };
  }

  async #addTo(pod: FannedPod, id: number): Promise<void> {
    const dump = await this.#workers.call<PodDump | undefined>(id, INPOD_ADD_RPC, { uid: pod.uid, info: pod.info, netnsFd: pod.netnsFd });
    pod.workers.add(id);
    pod.dump ??= dump;
  }

  /** Every worker releases the pod before its fd closes: a closed number could be reused by the next pod's fd. */
  async #delete(pod: FannedPod): Promise<void> {
    if (this.#pods.get(pod.uid) === pod) this.#pods.delete(pod.uid);
    await Promise.all([...pod.workers].map((id) => this.#workers.call(id, INPOD_DEL_RPC, { uid: pod.uid }).catch(() => undefined)));
    closeFd(pod.netnsFd);
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/** A worker's side of the fan-out: binds or releases a pod on the primary's word. */
export function servePodFanout(rpc: WorkerRpc, pods: () => PodProxies | undefined): void {
  const required = (): PodProxies => {
    const p = pods();
    if (p === undefined) throw new WeftError('WEFT_ERR_WORKER', 'in-pod capture is not configured in this worker');
    return p;
  };
  rpc.handle(INPOD_ADD_RPC, async (payload) => {
    const { uid, info, netnsFd } = payload as { uid: string; info: WorkloadInfo | undefined; netnsFd: number };
    await required().add(uid, info, netnsFd);
    return required().dumpOne(uid);
  });
  rpc.handle(INPOD_DEL_RPC, (payload) => pods()?.delete((payload as { uid: string }).uid) ?? false);
}
