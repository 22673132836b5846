// deploy/ stays consistent with the code: the ConfigMap's files decode with the real schemas, the RBAC grants exactly
// what the Kubernetes source uses, every port the config opens is declared, probes and the metrics Service point at
// real routes, the drain fits the grace period, the kustomize base and the example overlay render, and the two image
// build paths end alike.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { metricsRoutes, readinessRoutes } from '../runtime/admin/admin-routes.js';
import { parseConfigText } from '../runtime/config/config-load.js';
import type { WeftConfig } from '../runtime/config/config-schema.js';
import { parseSocketAddress } from '../runtime/config/socket-address.js';
import { WATCHED_RESOURCES } from '../runtime/kubernetes/watched-resources.js';
import { decodePluginConfig } from '../cni/cni-config.js';
import { decode, nodeConfigSchema } from '../cni/node-config.js';
import { hasCommand } from '../test/helpers/requirements.js';
import { DEBIAN_TOOLS, WEFT_UID } from './image/debian-base.js';
import { IMAGE_LAYOUT } from './image/image-stage.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kubernetes manifests are schemaless YAML walked by path here
type Doc = Record<string, any>;
const read = (file: string): string => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
const load = (file: string): Doc[] => parseAllDocuments(read(file)).map((d) => d.toJS() as Doc);

const [configMap] = load('deploy/weft-config.yaml');
const [daemonSet] = load('deploy/weft-daemonset.yaml');
const [cleanup] = load('deploy/weft-cleanup.yaml');
const rbac = load('deploy/weft-rbac.yaml');
const [service] = load('deploy/weft-service.yaml');
const podSpec = daemonSet!.spec.template.spec as Doc;
const container = (name: string): Doc => (podSpec.containers as Doc[]).find((c) => c.name === name)!;

function runtimeConfig(text: string): WeftConfig {
  const result = parseConfigText(text, 'weft.yaml');
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

/** Every address:port the config listens on: each listener (an address string or `{ address }`) and the local ports. */
function configuredListeners(config: WeftConfig): { name: string; host: string; port: number }[] {
  const out: { name: string; host: string; port: number }[] = [];
  for (const [name, value] of Object.entries(config.listeners as Record<string, unknown>)) {
    const address = typeof value === 'string' ? value : (value as { address?: string } | undefined)?.address;
    const parsed = address === undefined ? undefined : parseSocketAddress(address);
    if (parsed !== undefined) out.push({ name, ...parsed });
  }
  for (const p of config.localPorts) out.push({ name: `localPorts ${p.listen}`, ...parseSocketAddress(p.listen)! });
  return out;
}
const isLoopback = (host: string): boolean => host.startsWith('127.') || host === '::1';

describe('the ConfigMap', () => {
  it('holds a weft.yaml, a node setup file and a plugin entry that the real schemas accept', () => {
    const config = runtimeConfig(configMap!.data['weft.yaml'] as string);
    expect(config.listeners.outbound?.transparent).toBe(true);
    expect(config.listeners.inbound?.transparent).toBe(true);
    const node = decode(nodeConfigSchema, { ...(parse(configMap!.data['cni-node.yaml'] as string) as object), runtimeIp: '10.244.0.5' });
    expect(node.ok, JSON.stringify(node)).toBe(true);
    const plugin = decodePluginConfig({ ...(JSON.parse(configMap!.data['cni-plugin.json'] as string) as object), cniVersion: '1.0.0', name: 'k8s', type: 'weft-cni' });
    expect(plugin.ok, JSON.stringify(plugin)).toBe(true);
  });
});

describe('the DaemonSet', () => {
  const config = runtimeConfig(configMap!.data['weft.yaml'] as string);

  it('declares every port the config opens to the pod network, and no other', () => {
    const opened = configuredListeners(config).filter((l) => !isLoopback(l.host)).map((l) => l.port).sort();
    const declared = (container('weft').ports as Doc[]).map((p) => p.containerPort as number).sort();
    expect(declared).toEqual(opened);
  });

  it('probes the readiness route on the readiness listener, and the metrics Service targets the metrics route', () => {
    const probe = container('weft').readinessProbe.httpGet as Doc;
    expect(probe.port).toBe(parseSocketAddress(config.listeners.readiness!)!.port);
    expect(Object.keys(readinessRoutes({ isReady: () => true }))).toContain(probe.path);
    const metricsPort = parseSocketAddress(config.listeners.metrics!)!.port;
    const target = (service!.spec.ports as Doc[])[0]!.targetPort as string;
    expect((container('weft').ports as Doc[]).find((p) => p.name === target)?.containerPort).toBe(metricsPort);
    expect(Object.keys(metricsRoutes({ metrics: {} as never }))).toContain(daemonSet!.spec.template.metadata.annotations['prometheus.io/path']);
    expect(service!.spec.selector).toEqual(daemonSet!.spec.selector.matchLabels);
  });

  it('gives connections the whole drain deadline before the kubelet kills the pod', () => {
    expect(podSpec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.limits.drainDeadlineMs);
  });

  it('rolls out with a surge, never leaving a node without capture', () => {
    expect(daemonSet!.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  });

  it('mounts only declared volumes and calls weft-cni only with commands it has', () => {
    for (const ds of [daemonSet!, cleanup!]) {
      const spec = ds.spec.template.spec as Doc;
      const volumes = new Set((spec.volumes as Doc[]).map((v) => v.name as string));
      for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Doc[]) {
        for (const m of (c.volumeMounts ?? []) as Doc[]) expect(volumes, `${ds.metadata.name}/${c.name}`).toContain(m.name);
        const command = (c.command ?? []) as string[];
        // Either an argv whose program is weft-cni, or `sh -c` with `&&`-joined weft-cni invocations.
        const invocations = command[0] === 'sh' ? command[2]!.split('&&').map((part) => part.trim().split(/\s+/)) : [command];
        for (const argv of invocations) {
          if (argv[0] !== 'weft-cni') continue;
          expect(['install', 'uninstall', 'node']).toContain(argv[1]);
          if (argv[1] === 'node') expect(['setup', 'cleanup', 'doctor']).toContain(argv[2]);
          if (argv[1] === 'install' || argv[1] === 'uninstall') expect(argv[argv.indexOf('--state-dir') + 1]).toBe('/var/run/weft-cni');
          if (argv.includes('--plugin-script')) expect(argv[argv.indexOf('--plugin-script') + 1]).toBe(IMAGE_LAYOUT.cniBundle);
        }
      }
      expect(rbac.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === spec.serviceAccountName)).toBe(true);
      expect(spec.hostPID).toBe(true);
    }
  });

  it('runs as uid 0 every container that is privileged, has capabilities or writes host directories (the image runs as 1337)', () => {
    for (const ds of [daemonSet!, cleanup!]) {
      const spec = ds.spec.template.spec as Doc;
      for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Doc[]) {
        const sc = (c.securityContext ?? {}) as Doc;
        const needsRoot = sc.privileged === true || (sc.capabilities?.add ?? []).length > 0 || ((c.volumeMounts ?? []) as Doc[]).some((m) => (m.mountPath as string).startsWith('/host/'));
        if (needsRoot) expect(sc.runAsUser, `${ds.metadata.name}/${c.name}`).toBe(0);
      }
    }
  });

  it('runs the runtime with the image entrypoint and only the capabilities capture needs', () => {
    const weft = container('weft');
    expect(weft.command).toBeUndefined();
    expect(weft.args).toEqual(['run', '--config', IMAGE_LAYOUT.config]);
    expect(weft.securityContext.capabilities).toEqual({ add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
    expect(container('install-cni').securityContext.capabilities).toEqual({ drop: ['ALL'] });
    const install = container('install-cni');
    const command = install.command as string[];
    expect(install.readinessProbe.exec.command).toEqual(['test', '-e', command[command.indexOf('--ready-file') + 1]]);
  });
});

describe('the RBAC', () => {
  it('grants every group, resource and verb the Kubernetes source uses, and nothing more', () => {
    const role = rbac.find((d) => d.kind === 'ClusterRole')!;
    const granted = (role.rules as Doc[]).flatMap((r) =>
      (r.apiGroups as string[]).flatMap((g) => (r.resources as string[]).flatMap((res) => (r.verbs as string[]).map((v) => `${g}/${res}/${v}`))),
    );
    const used = WATCHED_RESOURCES.flatMap((w) => w.verbs.map((v) => `${w.group}/${w.resource}/${v}`));
    expect(granted.sort()).toEqual([...new Set(used)].sort());
    expect(granted.some((g) => g.includes('/secrets/'))).toBe(false);
    const binding = rbac.find((d) => d.kind === 'ClusterRoleBinding')!;
    expect(binding.roleRef.name).toBe(role.metadata.name);
  });
});

describe('the kustomize base and the example overlay', () => {
  const base = load('deploy/kustomization.yaml')[0]!;
  const overlayDir = 'examples/kubernetes';

  it('lists every manifest but the uninstall helper, and names the image every container uses', () => {
    expect([...(base.resources as string[])].sort()).toEqual(['weft-config.yaml', 'weft-daemonset.yaml', 'weft-rbac.yaml', 'weft-service.yaml']);
    const images = new Set([...podSpec.initContainers, ...podSpec.containers].map((c: Doc) => (c.image as string).split(':')[0]));
    expect([...images]).toEqual([(base.images as Doc[])[0]!.name]);
  });

  it("the overlay's weft.yaml (Redis state backend) validates", () => {
    const [cm] = load(`${overlayDir}/weft-config.yaml`);
    const config = runtimeConfig(cm!.data['weft.yaml'] as string);
    expect(config.state.backend).toBe('redis');
  });

  it('renders with kubectl kustomize: image, resources, log level and state backend reach the objects', (ctx) => {
    // .ci/run installs Debian's kubectl when the machine has none; the kustomizations avoid fields its older kustomize lacks.
    if (!hasCommand('kubectl')) ctx.skip('requires kubectl (Debian package kubernetes-client, installed by .ci/run)');
    const render = (dir: string): Doc[] => parseAllDocuments(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).map((d) => d.toJS() as Doc);
    expect(render('deploy').map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(
      [...rbac, configMap!, daemonSet!, service!].map((d) => `${d.kind}/${d.metadata.name}`).sort(),
    );
    const rendered = render(overlayDir);
    const ds = rendered.find((d) => d.kind === 'DaemonSet')!;
    const weft = (ds.spec.template.spec.containers as Doc[]).find((c) => c.name === 'weft')!;
    expect(weft.image).toBe('registry.example.com/mesh/weft:0.1.0');
    expect((weft.env as Doc[]).find((e) => e.name === 'WEFT_LOG_LEVEL')?.value).toBe('debug');
    expect(weft.resources.limits.memory).toBe('2Gi');
    expect(weft.securityContext.capabilities.add).toEqual(['NET_ADMIN', 'NET_RAW']);
    const cm = rendered.find((d) => d.kind === 'ConfigMap')!;
    expect(runtimeConfig(cm.data['weft.yaml'] as string).state).toMatchObject({ backend: 'redis', redis: { url: 'redis://redis.platform.svc.cluster.local:6379' } });
    expect(cm.data['cni-node.yaml']).toBe(configMap!.data['cni-node.yaml']);
  });
});

describe('the in-pod overlay (examples/kubernetes-inpod)', () => {
  const dir = 'examples/kubernetes-inpod';
  const [cm] = load(`${dir}/weft-config.yaml`);
  const [patch] = load(`${dir}/weft-daemonset.yaml`);
  const config = runtimeConfig(cm!.data['weft.yaml'] as string);
  const node = decode(nodeConfigSchema, parse(cm!.data['cni-node.yaml'] as string));
  const plugin = decodePluginConfig({ ...(JSON.parse(cm!.data['cni-plugin.json'] as string) as object), cniVersion: '1.0.0', name: 'k8s', type: 'weft-cni' });
  const patched = (name: string): Doc => (patch!.spec.template.spec.containers as Doc[]).find((c) => c.name === name)!;
  const mountOf = (c: Doc, volume: string): string | undefined => ((c.volumeMounts ?? []) as Doc[]).find((m) => m.name === volume)?.mountPath as string | undefined;
  const dirOf = (file: string): string => file.slice(0, file.lastIndexOf('/'));

  it('wires the runtime, the agent and the plugin to the same sockets, in directories each container mounts', () => {
    if (!node.ok || !plugin.ok) throw new Error(JSON.stringify({ node, plugin }));
    expect(node.value.mode).toBe('inpod');
    expect(plugin.value.mode).toBe('inpod');
    expect(config.inpod?.socket).toBe(node.value.zdsSocket);
    expect(plugin.value.agentSocket).toBe(node.value.agentSocket);
    // ZDS between the two containers of the pod; the plugin-event socket on the host directory weft-cni shares.
    expect(mountOf(patched('weft'), 'zds')).toBe(dirOf(node.value.zdsSocket));
    expect(mountOf(patched('cni-agent'), 'zds')).toBe(dirOf(node.value.zdsSocket));
    expect(mountOf(patched('cni-agent'), 'cni-state')).toBe(dirOf(node.value.agentSocket));
    expect(mountOf(patched('cni-agent'), 'config')).toBe('/etc/weft');
    expect(patched('cni-agent').command).toEqual(['weft-cni', 'agent', '--config', '/etc/weft/cni-node.yaml']);
    expect(patched('cni-agent').readinessProbe.exec.command).toEqual(['test', '-S', node.value.agentSocket]);
  });

  it('declares the ports the in-pod config opens, drops node setup and gives the runtime setns', () => {
    const opened = configuredListeners(config).filter((l) => !isLoopback(l.host)).map((l) => l.port).sort();
    expect((patched('weft').ports as Doc[]).filter((p) => p.$patch === undefined).map((p) => p.containerPort as number).sort()).toEqual(opened);
    expect(patch!.spec.template.spec.initContainers).toEqual([{ name: 'node-setup', $patch: 'delete' }]);
    expect(patched('weft').securityContext.capabilities).toEqual({ add: ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN'], drop: ['ALL'] });
    expect(patched('cni-agent').securityContext).toMatchObject({ runAsUser: 0, capabilities: { add: ['SYS_PTRACE'], drop: ['ALL'] } });
  });

  it('renders with kubectl kustomize: the agent beside the runtime, no init container, the in-pod ConfigMap', (ctx) => {
    if (!hasCommand('kubectl')) ctx.skip('requires kubectl (Debian package kubernetes-client, installed by .ci/run)');
    const rendered = parseAllDocuments(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).map((d) => d.toJS() as Doc);
    const spec = rendered.find((d) => d.kind === 'DaemonSet')!.spec.template.spec as Doc;
    expect((spec.containers as Doc[]).map((c) => c.name as string).sort()).toEqual(['cni-agent', 'install-cni', 'weft']);
    expect(spec.initContainers ?? []).toEqual([]);
    const volumes = new Set((spec.volumes as Doc[]).map((v) => v.name as string));
    for (const c of spec.containers as Doc[]) for (const m of (c.volumeMounts ?? []) as Doc[]) expect(volumes, c.name as string).toContain(m.name);
    const weft = (spec.containers as Doc[]).find((c) => c.name === 'weft')!;
    expect((weft.ports as Doc[]).map((p) => p.containerPort as number).sort()).toEqual([15020, 15021]);
    expect(rendered.find((d) => d.kind === 'ConfigMap')!.data['cni-node.yaml']).toBe(cm!.data['cni-node.yaml']);
  });
});

describe('the two image build paths', () => {
  const tail = (file: string): string => read(file).split('# --- weft layout')[1]!.split('\n').slice(1).join('\n');

  it('end in the same configuration, install the same Debian tools and create the same user', () => {
    expect(tail('deploy/Dockerfile')).toBe(tail('deploy/image/Containerfile'));
    const dockerfile = read('deploy/Dockerfile');
    const apt = /apt-get install -y --no-install-recommends ([^\\\n]+)/.exec(dockerfile)![1]!.trim().split(/\s+/);
    expect(apt).toEqual([...DEBIAN_TOOLS]);
    expect(dockerfile).toContain(`useradd --uid ${WEFT_UID} --gid ${WEFT_UID}`);
    expect(tail('deploy/Dockerfile')).toContain(`USER ${WEFT_UID}:${WEFT_UID}`);
    expect(dockerfile).toContain('node dist/deploy/image/image-stage.js /stage');
  });
});
