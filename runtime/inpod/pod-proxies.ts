/** In-pod capture's per-pod half: for each enrolled pod, listeners created inside its network namespace (15001, 15006, 15008, and 15053 with the DNS proxy), on IPv4 and, for a pod with IPv6 addresses, IPv6, served by weft's one L4/HBONE/L7/DNS path, and the Egress that opens upstream sockets there; dropped when the pod is deleted. */
import net from 'node:net';
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
  dns: number;
}

/** Serves the DNS proxy on one pod's UDP socket and TCP listener (DnsProxy.attach), answering for the pod's namespace. */
export type PodDnsServer = (fds: { udp: number; tcp: number }, family: 4 | 6, namespace: string | undefined) => Promise<{ close(): void }>;

export interface PodProxiesOptions {
  ports: PodPorts;
  /** SO_MARK of every socket weft makes in a pod (0x539, ztunnel's 1337): the pod's rules never capture them. */
  mark: number;
  onOutbound: (socket: net.Socket) => void;
  onInbound: (socket: net.Socket) => void;
  onHbone: (socket: net.Socket) => void;
  /** With the DNS proxy on: each pod gets `ports.dns` (UDP and TCP), where its rules send port 53 under dnsCapture. */
  dns?: PodDnsServer;
  /**
   * A worker thread's pods (runtime/workers): the primary owns each netns fd, lends the same descriptor to every worker
   * and closes it once all have released the pod, so no fd is left behind when a worker thread dies.
   */
  borrowedFds?: boolean;
}

/** One captured pod as /config_dump lists it. */
export interface PodDump {
  uid: string;
  name: string | undefined;
  namespace: string | undefined;
  serviceAccount: string | undefined;
  addresses: string[];
  netns: string;
  ports: number[];
  since: string;
}

interface PodProxy {
  uid: string;
  info: WorkloadInfo | undefined;
  netnsFd: number;
  /** `dev:inode` of the namespace: how a re-sent AddWorkload is recognised as the same pod (ztunnel, cilium). */
  netnsId: string;
  addresses: string[];
  listeners: BoundListener[];
  dns: { close(): void }[];
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
   * Starts (or keeps) the pod's proxy; takes ownership of `netnsFd` (unless borrowedFds). Resolves once every listener accepts, which is what
   * the ACK promises the CNI: the application starts only after this.
   */
  async add(uid: string, info: WorkloadInfo | undefined, netnsFd: number): Promise<void> {
    const netnsId = netnsIdOf(netnsFd);
    const existing = this.#pods.get(uid);
    if (existing !== undefined && existing.netnsId === netnsId) {
      // A replay after reconnecting: the proxy is already running in that very namespace.
      if (existing.netnsFd !== netnsFd) this.#release(netnsFd);
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
      dns: [],
      egress: { socketFd: (source, family) => this.#native.netnsSocket(netnsFd, source ?? '', this.#opts.mark, family) },
      since: new Date().toISOString(),
    };
    try {
      pod.addresses = this.#native.netnsAddresses(netnsFd);
      const { ports, mark } = this.#opts;
      // IPv6 listeners only where the pod has IPv6: binding `::` fails in a namespace with IPv6 switched off.
      const hosts = pod.addresses.some((ip) => net.isIPv6(ip)) ? ['0.0.0.0', '::'] : ['0.0.0.0'];
      const bind = async (name: string, port: number, onConnection: (s: net.Socket) => void, pause: boolean): Promise<void> => {
        for (const host of hosts) {
          // A hot upgrade hands the pod's sockets over (the agent replays its pods to the successor after it started).
          const fd = () => this.#native.netnsListen(netnsFd, host, port, 4096, mark);
          const address = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
          pod.listeners.push(await listen(`${name} (pod ${uid})`, { address, fd, late: true, pauseOnConnect: pause }, onConnection));
        }
      };
      // Paused on accept as the node listeners are: the L4 copy takes the socket over before anything is read.
      await bind('outbound', ports.outbound, (s) => this.#ownSource(pod, s) && this.#opts.onOutbound(s), true);
      await bind('inbound', ports.inbound, (s) => this.#opts.onInbound(s), true);
      await bind('hbone', ports.hbone, (s) => this.#opts.onHbone(s), false);
      const dns = this.#opts.dns;
      if (dns !== undefined) {
        // Loopback, as ztunnel's 127.0.0.1:15053: REDIRECT of the pod's own packets maps them to 127.0.0.1 (::1), and an
        // unconnected UDP socket bound to the wildcard would answer from the pod's address, which conntrack cannot
        // un-NAT back to the nameserver the application asked.
        for (const host of hosts.map((h) => (net.isIPv6(h) ? '::1' : '127.0.0.1'))) {
          const udp = this.#native.netnsListen(netnsFd, host, ports.dns, 0, mark, true);
          let tcp: number;
          try {
            tcp = this.#native.netnsListen(netnsFd, host, ports.dns, 4096, mark);
          } catch (err) {
            closeFd(udp);
            throw err;
          }
          pod.dns.push(await dns({ udp, tcp }, net.isIPv6(host) ? 6 : 4, info?.namespace || undefined));
        }
      }
    } catch (err) {
      for (const l of pod.listeners) await l.close();
      for (const d of pod.dns) d.close();
      this.#release(netnsFd);
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
    for (const d of pod.dns) d.close();
    this.#release(pod.netnsFd);
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

  #release(fd: number): void {
    if (this.#opts.borrowedFds !== true) closeFd(fd);
  }

  /** For /config_dump: the captured pods. */
  dump(): PodDump[] {
    return [...this.#pods.keys()].map((uid) => this.dumpOne(uid) as PodDump);
  }

  dumpOne(uid: string): PodDump | undefined {
    const p = this.#pods.get(uid);
    if (p === undefined) return undefined;
    return {
      uid: p.uid,
      name: p.info?.name,
      namespace: p.info?.namespace,
      serviceAccount: p.info?.serviceAccount,
      addresses: p.addresses,
      netns: p.netnsId,
      ports: [...new Set(p.listeners.map((l) => l.port)), ...(p.dns.length > 0 ? [this.#opts.ports.dns] : [])],
      since: p.since,
    };
  }
}
