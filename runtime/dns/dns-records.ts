/** The names weft answers itself, built once per state snapshot: Services (VIPs, or endpoints when headless), their named ports as SRV, and pods, with kube-dns search-path semantics for short names. */
import { isIPv4, isIPv6 } from 'node:net';
import type { StateSnapshot } from '../state/state-snapshot.js';

/** The addresses of a name weft owns; a name with none of the asked family is NODATA, never NXDOMAIN. */
export interface DnsHost {
  /** The fully qualified name it matched (`reviews.default.svc.cluster.local`). */
  fqdn: string;
  v4: string[];
  v6: string[];
}

/** An SRV answer for `_port._tcp.<service fqdn>`: the port's number and the Service's name (kube-dns, ClusterIP Services). */
export interface DnsService {
  host: DnsHost;
  port: number;
}

/** kube-dns answers a ClusterIP Service's named port with one SRV record, priority 10 and weight 100. */
export const SRV_PRIORITY = 10;
export const SRV_WEIGHT = 100;

const cache = new WeakMap<StateSnapshot, DnsRecords>();

function host(fqdn: string, addresses: Iterable<string>): DnsHost {
  const list = [...new Set(addresses)];
  return { fqdn, v4: list.filter((a) => isIPv4(a)), v6: list.filter((a) => isIPv6(a)) };
}

/** kube-dns pod records: `1-2-3-4.ns.pod.<domain>`, `fd00--1.ns.pod.<domain>` (":" becomes "-"). */
function podLabel(ip: string): string {
  return ip.replaceAll(isIPv4(ip) ? '.' : ':', '-');
}

export class DnsRecords {
  readonly domain: string;
  readonly #hosts = new Map<string, DnsHost>();
  /** `_name._tcp.<service fqdn>` -> port, for each named port of a Service with a cluster IP. */
  readonly #ports = new Map<string, number>();

  /** One table per snapshot (built on first query after a reload, then shared by every query on that snapshot). */
  static of(snapshot: StateSnapshot): DnsRecords {
    let records = cache.get(snapshot);
    if (records === undefined) {
      records = new DnsRecords(snapshot);
      cache.set(snapshot, records);
    }
    return records;
  }

  constructor(snapshot: StateSnapshot) {
    const config = snapshot.config;
    this.domain = (config.dns.clusterDomain ?? config.trustDomain).toLowerCase();
    for (const s of snapshot.services) {
      const fqdn = `${s.name}.${s.namespace}.svc.${this.domain}`;
      // A headless Service (no cluster IP) resolves to its ready endpoints, as kube-dns does.
      const addresses = s.addresses.length > 0 ? s.addresses : s.endpoints.filter((w) => w.status === 'Healthy').flatMap((w) => w.addresses);
      this.#hosts.set(fqdn, host(fqdn, addresses));
      // Weft proxies TCP, so every Service port is `_tcp`. Headless Services would need one target per endpoint
      // hostname (`<hostname>.<svc>.<ns>.svc`), which the state does not carry: they get none.
      if (s.addresses.length > 0) for (const p of s.ports) if (p.name !== undefined) this.#ports.set(`_${p.name.toLowerCase()}._tcp.${fqdn}`, p.port);
    }
    for (const w of snapshot.workloads) {
      for (const ip of w.addresses) {
        const fqdn = `${podLabel(ip)}.${w.namespace}.pod.${this.domain}`;
        this.#hosts.set(fqdn, host(fqdn, [ip]));
      }
    }
  }

  get size(): number {
    return this.#hosts.size;
  }

  /**
   * The host a query names, or undefined when the name is not weft's (it is forwarded). `clientNamespace` is the
   * asking pod's namespace: a single label is a Service there, as the pod's first search domain `<ns>.svc.<domain>`
   * would make it. `name.ns` and `name.ns.svc` are the forms the pod's other search domains complete.
   */
  lookup(qname: string, clientNamespace: string | undefined): DnsHost | undefined {
    const name = qname.toLowerCase().replace(/\.$/, '');
    const exact = this.#hosts.get(name);
    if (exact !== undefined) return exact;
    const fqdn = this.#complete(name, clientNamespace);
    return fqdn === undefined ? undefined : this.#hosts.get(fqdn);
  }

  /**
   * The SRV answer for `_port._proto.<service>` (any form `lookup` takes for the Service), or undefined when weft does
   * not know that named port (the query is forwarded, as for any name that is not weft's).
   */
  service(qname: string, clientNamespace: string | undefined): DnsService | undefined {
    const name = qname.toLowerCase().replace(/\.$/, '');
    const match = /^(_[^.]+\._[^.]+)\.(.+)$/.exec(name);
    if (match === null) return undefined;
    const [, prefix = '', rest = ''] = match;
    const host = this.lookup(rest, clientNamespace);
    const port = host === undefined ? undefined : this.#ports.get(`${prefix}.${host.fqdn}`);
    return host === undefined || port === undefined ? undefined : { host, port };
  }

  /** The fully qualified name a short form completes to through the pod's search path, or undefined. */
  #complete(name: string, clientNamespace: string | undefined): string | undefined {
    const labels = name.split('.');
    if (labels.length === 3 && labels[2] === 'svc') return `${name}.${this.domain}`;
    if (labels.length === 2) return `${name}.svc.${this.domain}`;
    if (labels.length === 1 && clientNamespace !== undefined && name !== '') return `${name}.${clientNamespace}.svc.${this.domain}`;
    return undefined;
  }
}
