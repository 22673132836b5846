/** The fake API server's scale mode: SIG-scalability's cluster (10,000 Services, 150,000 Pods over 1,000 nodes, 110 on one node) with realistically sized objects, and pod churn. */
import type { FakeResourceStore, KubeObject } from './fake-resource-store.js';

export interface ScaleShape {
  namespaces: number;
  services: number;
  pods: number;
  nodes: number;
  /** Pods on `localNode` (kubelet's max-pods default). */
  localPods: number;
  localNode: string;
}

export const SIG_SCALABILITY: ScaleShape = { namespaces: 100, services: 10_000, pods: 150_000, nodes: 1_000, localPods: 110, localNode: 'node-0' };

export function podIp(n: number): string {
  return `10.${64 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

function nodeOf(shape: ScaleShape, n: number): string {
  if (n < shape.localPods) return shape.localNode;
  return `node-${1 + ((n - shape.localPods) % (shape.nodes - 1))}`;
}

/** A Pod as the API server returns it (managedFields, a container with env and resources, status conditions): about 2 KB of JSON. */
export function scalePod(shape: ScaleShape, n: number, extraLabels: Record<string, string> = {}): KubeObject {
  const svc = n % shape.services;
  const ns = `ns-${svc % shape.namespaces}`;
  const app = `svc-${svc}`;
  const ts = '2026-12-01T00:00:00Z';
  return {
    metadata: {
      name: `${app}-${n}`,
      namespace: ns,
      labels: { app, 'pod-template-hash': '5d8f7c9b4', ...extraLabels },
      annotations: { 'kubectl.kubernetes.io/restartedAt': ts, 'prometheus.io/scrape': 'true' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${app}-5d8f7c9b4`, uid: '1f0e3c8a-9b7d-4e6f-8a5b-3c2d1e0f9a8b', controller: true, blockOwnerDeletion: true }],
      managedFields: [{ manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: ts, fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:containers': {} } } }],
    },
    spec: {
      nodeName: nodeOf(shape, n),
      serviceAccountName: app,
      containers: [{
        name: 'app', image: `registry.example/${app}:1.0.0`, ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
        env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }, { name: 'LOG_LEVEL', value: 'info' }],
        resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        volumeMounts: [{ name: 'kube-api-access', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
        readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 10 },
      }],
      volumes: [{ name: 'kube-api-access', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] } }],
      restartPolicy: 'Always', dnsPolicy: 'ClusterFirst', schedulerName: 'default-scheduler', terminationGracePeriodSeconds: 30,
    },
    status: {
      phase: 'Running', podIP: podIp(n), podIPs: [{ ip: podIp(n) }], hostIP: '192.168.0.1', startTime: ts, qosClass: 'Burstable',
      conditions: ['Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({ type, status: 'True', lastTransitionTime: ts })),
      containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: `registry.example/${app}:1.0.0`, imageID: 'sha256:0123', containerID: 'containerd://abc', started: true, state: { running: { startedAt: ts } } }],
    },
  };
}

export function scaleService(shape: ScaleShape, i: number): KubeObject {
  const ip = `10.96.${i >> 8}.${i & 255}`;
  return {
    metadata: { name: `svc-${i}`, namespace: `ns-${i % shape.namespaces}`, labels: { app: `svc-${i}` } },
    spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], selector: { app: `svc-${i}` }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], sessionAffinity: 'None', ipFamilies: ['IPv4'] },
  };
}

/** Loads the whole cluster at one resourceVersion (as after an etcd compaction). */
export function loadScale(store: FakeResourceStore, shape: ScaleShape = SIG_SCALABILITY): void {
  store.bulkLoad('namespaces', Array.from({ length: shape.namespaces }, (_, i): KubeObject => ({ metadata: { name: `ns-${i}`, labels: i % 2 === 0 ? { 'istio.io/dataplane-mode': 'ambient' } : ({}) } })));
  store.bulkLoad('services', Array.from({ length: shape.services }, (_, i) => scaleService(shape, i)));
  store.bulkLoad('pods', Array.from({ length: shape.pods }, (_, n) => scalePod(shape, n)));
}
