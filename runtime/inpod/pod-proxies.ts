/** In-pod capture's per-pod half: for each enrolled pod, listeners created inside its network namespace (15001, 15006, 15008) served by weft's one L4/HBONE/L7 path, and the Egress that opens upstream sockets there; dropped when the pod is deleted. */
import type net from 'node:net';
import { createLogger } from '../log.js';
import { WeftError } from '../errors.js';
import { listen, type BoundListener } from '../l4/listener.js';
import type { Egress } from '../l4/egress.js';
import { normalizeIp } from '../l4/original-destination.js';
import { closeFd, netnsIdOf, requireNetnsNative, type NetnsNative } from '../native/weft-netns.js';
import type { WorkloadInfo } from './zds-codec.js';

const log = createLogger('inpod');

/** The in-pod ports, as the pod's iptables rules name them (reference §2.9). */
export interface PodPorts {
  outbound: number;
  inbound: number;
  hbone: number;
}

export interface PodProxiesOptions {
  ports: PodPorts;
  /** SO_MARK of every socket weft makes in a pod (0x539, ztunnel's 1337): the pod's rules never capture them. */
  mark: number;
  onOutbound: (socket: net.Socket) => void;
  onInbound: (socket: net.Socket) => void;
  onHbone: (socket: net.Socket) => void;
}

interface PodProxy {
  uid: string;
  info: WorkloadInfo | undefined;
  netnsFd: number;
  /** `dev:inode` of the namespace: how a re-sent AddWorkload is recognised as the same pod (ztunnel, cilium). */
  netnsId: string;
  addresses: string[];
  listeners: BoundListener[];
  egress: Egress;
  since: string;
}

export class PodProxies {
  readonly #opts: PodProxiesOptions;
  readonly #native: NetnsNative;
  readonly #pods = new Map<string, PodProxy>();
  readonly #byIp = new Map<string, PodProxy>();

  constructor(opts: PodProxiesOptions) {
    this.#opts = opts;
    this.#native = requireNetnsNative('in-pod capture');
  }

  get size(): number {
    return this.#pods.size;
  }

  uids(): string[] {
    return [...this.#pods.keys()];
  }

  /**
   * Starts (or keeps) the pod's proxy; takes ownership of `netnsFd`. Resolves once every listener accepts, which is what
   * the ACK promises the CNI: the application starts only after this.
   */
  async add(uid: string, info: WorkloadInfo | undefined, netnsFd: number): Promise<void> {
    const netnsId = netnsIdOf(netnsFd);
    const existing = this.#pods.get(uid);
    if (existing !== undefined && existing.netnsId === netnsId) {
      // A replay after reconnecting: the proxy is already running in that very namespace.
      closeFd(netnsFd);
      return;
    }
    if (existing !== undefined) await this.delete(uid);
    const pod: PodProxy = {
      uid,
      info,
      netnsFd,
      netnsId,
      addresses: [],
      listeners: [],
      egress: { socketFd: (source) => this.#native.netnsSocket(netnsFd, source ?? '', this.#opts.mark) },
      since: new Date().toISOString(),
    };
    try {
      pod.addresses = this.#native.netnsAddresses(netnsFd);
      const { ports, mark } = this.#opts;
      const bind = async (name: string, port: number, onConnection: (s: net.Socket) => void, pause: boolean): Promise<void> => {
        // A hot upgrade hands the pod's sockets over (the agent replays its pods to the successor after it started).
        const fd = () => this.#native.netnsListen(netnsFd, '0.0.0.0', port, 4096, mark);
        pod.listeners.push(await listen(`${name} (pod ${uid})`, { address: `0.0.0.0:${port}`, fd, late: true, pauseOnConnect: pause }, onConnection));
      };
      // Paused on accept as the node listeners are: the L4 copy takes the socket over before anything is read.
      await bind('outbound', ports.outbound, (s) => this.#ownSource(pod, s) && this.#opts.onOutbound(s), true);
      await bind('inbound', ports.inbound, (s) => this.#opts.onInbound(s), true);
      await bind('hbone', ports.hbone, (s) => this.#opts.onHbone(s), false);
    } catch (err) {
      for (const l of pod.listeners) await l.close();
      closeFd(netnsFd);
      throw new WeftError('WEFT_ERR_LISTEN', `in-pod listeners for pod ${uid}: ${(err as Error).message}`, { cause: err });
    }
    this.#pods.set(uid, pod);
    for (const ip of pod.addresses) this.#byIp.set(ip, pod);
    log.info({ uid, pod: info === undefined ? undefined : `${info.namespace}/${info.name}`, addresses: pod.addresses }, 'pod captured');
  }

  /**
   * weft attributes a captured outbound connection (identity, egress) by its source address, so the source must be one
   * of the addresses the pod had when it was enrolled: a pod that adds a neighbour's IP to its interface cannot borrow
   * the neighbour's identity.
   */
  #ownSource(pod: PodProxy, socket: net.Socket): boolean {
    const source = normalizeIp(socket.remoteAddress);
    if (pod.addresses.includes(source)) return true;
    log.warn({ uid: pod.uid, source, addresses: pod.addresses }, 'outbound connection from an address the pod was not enrolled with; refused');
    socket.resetAndDestroy();
    return false;
  }

  /** Tears the pod's proxy down at once: its containers are gone (ZDS DelWorkload), so its connections are too. */
  async delete(uid: string): Promise<boolean> {
    const pod = this.#pods.get(uid);
    if (pod === undefined) return false;
    this.#pods.delete(uid);
    for (const ip of pod.addresses) if (this.#byIp.get(ip) === pod) this.#byIp.delete(ip);
    for (const l of pod.listeners) {
      await l.close();
      l.destroyConnections();
    }
    closeFd(pod.netnsFd);
    log.info({ uid }, 'pod released');
    return true;
  }

  /** After a snapshot: pods the agent no longer knows are gone. */
  async retainOnly(keep: ReadonlySet<string>): Promise<string[]> {
    const dropped = [...this.#pods.keys()].filter((uid) => !keep.has(uid));
    for (const uid of dropped) await this.delete(uid);
    return dropped;
  }

  egressFor(ip: string): Egress | undefined {
    return this.#byIp.get(ip)?.egress;
  }

  /** Drain's first step: no new connections in any pod; open ones go on until close(). */
  async stopAccepting(): Promise<void> {
    for (const pod of this.#pods.values()) for (const l of pod.listeners) await l.close();
  }

  async close(): Promise<void> {
    for (const uid of [...this.#pods.keys()]) await this.delete(uid);
  }

  /** For /config_dump: the captured pods. */
  dump(): unknown[] {
    return [...this.#pods.values()].map((p) => ({
      uid: p.uid,
      name: p.info?.name,
      namespace: p.info?.namespace,
      serviceAccount: p.info?.serviceAccount,
      addresses: p.addresses,
      netns: p.netnsId,
      ports: p.listeners.map((l) => l.port),
      since: p.since,
    }));
  }
}
