/** Finds or builds the UpstreamCluster for a route backend (service port + label subset), a directly addressed workload, or a passthrough address; endpoints and pools are shared by address so state survives reloads. */
import type { LoadBalancerConfig, TrafficPolicyConfig } from '../config/l7-config-schema.js';
import type { Service, StateSnapshot, Workload } from '../state/state-snapshot.js';
import type { ConnectFn } from './http1-pool.js';
import { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';

function hasLabels(w: Workload, labels: Record<string, string> | undefined): boolean {
  if (labels === undefined) return true;
  for (const k in labels) if (w.labels[k] !== labels[k]) return false;
  return true;
}

export class ClusterRegistry {
  readonly #clusters = new Map<string, UpstreamCluster>();
  readonly #endpoints = new Map<string, UpstreamEndpoint>();
  readonly #policies = new WeakMap<StateSnapshot, Map<string, TrafficPolicyConfig | null>>();
  readonly #connect: ConnectFn;

  constructor(connect: ConnectFn) {
    this.#connect = connect;
  }

  endpoint(address: string, port: number, workload: Workload | undefined): UpstreamEndpoint {
    const key = `${address}|${port}`;
    let ep = this.#endpoints.get(key);
    if (ep === undefined) this.#endpoints.set(key, (ep = new UpstreamEndpoint(address, port, this.#connect)));
    ep.workload = workload;
    return ep;
  }

  /** The traffic policy for a service port (a port-specific entry wins over a service-wide one). */
  policy(snapshot: StateSnapshot, service: Service | undefined, port: number): TrafficPolicyConfig | undefined {
    if (service === undefined || snapshot.config.trafficPolicies.length === 0) return undefined;
    let perSnapshot = this.#policies.get(snapshot);
    if (perSnapshot === undefined) this.#policies.set(snapshot, (perSnapshot = new Map<string, TrafficPolicyConfig | null>()));
    const key = `${service.key}:${port}`;
    let found = perSnapshot.get(key);
    if (found === undefined) {
      const candidates = snapshot.config.trafficPolicies.filter((p) => snapshot.serviceByRef(p.host)?.key === service.key && (p.port === undefined || p.port === port));
      found = candidates.find((p) => p.port === port) ?? candidates[0] ?? null;
      perSnapshot.set(key, found);
    }
    return found ?? undefined;
  }

  /** A service port's cluster, optionally narrowed to workloads carrying `labels`. */
  forService(snapshot: StateSnapshot, service: Service, servicePort: number, labels: Record<string, string> | undefined, routeLb: LoadBalancerConfig | undefined): UpstreamCluster {
    const subset = labels === undefined ? '' : Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(',');
    const name = `outbound|${servicePort}|${subset}|${service.hostname}`;
    let cluster = this.#clusters.get(name);
    if (cluster === undefined) this.#clusters.set(name, (cluster = new UpstreamCluster(name)));
    if (cluster.version !== snapshot.version) {
      const port = service.ports.find((p) => p.port === servicePort);
      const targetPort = port?.targetPort ?? servicePort;
      const endpoints: UpstreamEndpoint[] = [];
      for (const w of service.endpoints) {
        if (w.status !== 'Healthy' || !hasLabels(w, labels)) continue;
        const ip = w.addresses[0];
        if (ip !== undefined) endpoints.push(this.endpoint(ip, targetPort, w));
      }
      const policy = this.policy(snapshot, service, servicePort);
      cluster.configure(endpoints, routeLb ?? policy?.loadBalancer, policy?.connectionPool, policy?.outlierDetection, snapshot.version);
    } else if (routeLb !== undefined && routeLb !== cluster.lbConfig) {
      const policy = this.policy(snapshot, service, servicePort);
      cluster.configure(cluster.endpoints, routeLb, policy?.connectionPool, policy?.outlierDetection, snapshot.version);
    }
    return cluster;
  }

  /** A single address: a workload addressed by pod IP, or an address outside the mesh (passthrough). */
  forAddress(snapshot: StateSnapshot, address: string, port: number, workload: Workload | undefined): UpstreamCluster {
    const name = workload === undefined ? `passthrough|${address}|${port}` : `inbound-pod|${port}||${workload.uid}`;
    let cluster = this.#clusters.get(name);
    if (cluster === undefined) this.#clusters.set(name, (cluster = new UpstreamCluster(name)));
    if (cluster.version !== snapshot.version) cluster.configure([this.endpoint(address, port, workload)], undefined, undefined, undefined, snapshot.version);
    return cluster;
  }

  clusters(): IterableIterator<UpstreamCluster> {
    return this.#clusters.values();
  }

  sweepIdle(before: number): void {
    for (const ep of this.#endpoints.values()) for (const pool of ep.pools()) pool.sweepIdle(before);
  }

  /** Open upstream sockets across all pools (tests assert no leaks with it). */
  openConnections(): number {
    let n = 0;
    for (const ep of this.#endpoints.values()) for (const pool of ep.pools()) n += pool.size;
    return n;
  }

  closeAll(): void {
    for (const ep of this.#endpoints.values()) for (const pool of ep.pools()) pool.closeAll();
  }
}
