/** The names weft answers itself, resolved per state snapshot: Services (VIPs, or endpoints when headless), their named ports as SRV, and pods, with kube-dns search-path semantics for short names. */
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

/** kube-dns pod records: `1-2-3-4.ns.pod.<domain>`, `fd00--1.ns.pod.<domain>` (":" became "-"); undefined when the label is no address. */
function podAddress(label: string): string | undefined {
  const v4 = label.replaceAll('-', '.');
  if (isIPv4(v4)) return v4;
  const v6 = label.replaceAll('-', ':');
  return isIPv6(v6) ? v6 : undefined;
}

export class DnsRecords {
  readonly domain: string;
  readonly #snapshot: StateSnapshot;
  /** Names resolved so far on this snapshot (null: not weft's). */
  readonly #hosts = new Map<string, DnsHost | null>();

  /** One table per snapshot, shared by every query on that snapshot. */
  static of(snapshot: StateSnapshot): DnsRecords {
    let records = cache.get(snapshot);
    if (records === undefined) {
      records = new DnsRecords(snapshot);
      cache.set(snapshot, records);
    }
    return records;
  }

  /** Names are resolved from the snapshot's indexes when first asked for: a snapshot of 150,000 pods costs nothing up front. */
  constructor(snapshot: StateSnapshot) {
    const config = snapshot.config;
    this.#snapshot = snapshot;
    this.domain = (config.dns.clusterDomain ?? config.trustDomain).toLowerCase();
  }

  /** A fully qualified name weft owns: `<service>.<ns>.svc.<domain>` or `<pod address>.<ns>.pod.<domain>`. */
  #host(fqdn: string): DnsHost | undefined {
    const cached = this.#hosts.get(fqdn);
    if (cached !== undefined) return cached ?? undefined;
    let found: DnsHost | undefined;
    const labels = fqdn.endsWith(`.${this.domain}`) ? fqdn.slice(0, -this.domain.length - 1).split('.') : [];
    if (labels.length === 3 && labels[2] === 'svc') {
      const s = this.#snapshot.serviceByName(`${labels[0]}.${labels[1]}`);
      // A headless Service (no cluster IP) resolves to its ready endpoints, as kube-dns does.
      if (s !== undefined) found = host(fqdn, s.addresses.length > 0 ? s.addresses : s.endpoints.filter((w) => w.status === 'Healthy').flatMap((w) => w.addresses));
    } else if (labels.length === 3 && labels[2] === 'pod') {
      const ip = podAddress(labels[0] ?? '');
      const w = ip === undefined ? undefined : this.#snapshot.workloadByIp(ip);
      if (ip !== undefined && w !== undefined && w.namespace === labels[1]) found = host(fqdn, [ip]);
    }
    this.#hosts.set(fqdn, found ?? null);
    return found;
  }

  /**
   * The host a query names, or undefined when the name is not weft's (it is forwarded). `clientNamespace` is the
   * asking pod's namespace: a single label is a Service there, as the pod's first search domain `<ns>.svc.<domain>`
   * would make it. `name.ns` and `name.ns.svc` are the forms the pod's other search domains complete.
   */
  lookup(qname: string, clientNamespace: string | undefined): DnsHost | undefined {
    const name = qname.toLowerCase().replace(/\.$/, '');
    const exact = this.#host(name);
    if (exact !== undefined) return exact;
    const fqdn = this.#complete(name, clientNamespace);
    return fqdn === undefined ? undefined : this.#host(fqdn);
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
    return host === undefined ? undefined : this.#namedPort(prefix, host);
  }

  /**
   * `_name._tcp` of a Service with a cluster IP. weft proxies TCP, so every Service port is `_tcp`. Headless Services
   * would need one target per endpoint hostname (`<hostname>.<svc>.<ns>.svc`), which the state does not carry: none.
   */
  #namedPort(prefix: string, host: DnsHost): DnsService | undefined {
    const labels = host.fqdn.slice(0, -this.domain.length - 1).split('.');
    if (labels.length !== 3 || labels[2] !== 'svc') return undefined;
    const s = this.#snapshot.serviceByName(`${labels[0]}.${labels[1]}`);
    if (s === undefined || s.addresses.length === 0) return undefined;
    const port = s.ports.find((p) => p.name !== undefined && `_${p.name.toLowerCase()}._tcp` === prefix);
    return port === undefined ? undefined : { host, port: port.port };
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
