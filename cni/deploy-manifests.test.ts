// deploy/ manifests stay consistent with the code: the ConfigMap's files decode with the real schemas, every weft-cni invocation is
// a command main.ts knows, every mounted volume is declared, and the service account exists.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfigText } from '../runtime/config/config-load.js';
import { decodePluginConfig } from './cni-config.js';
import { decode, nodeConfigSchema } from './node-config.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kubernetes manifests are schemaless YAML walked by path here
type Doc = Record<string, any>;
const load = (file: string): Doc[] =>
  parseAllDocuments(readFileSync(new URL(`../deploy/${file}`, import.meta.url), 'utf8')).map((d) => d.toJS() as Doc);

const [configMap] = load('weft-config.yaml');
const daemonSets = [...load('weft-daemonset.yaml'), ...load('weft-cleanup.yaml')];
const rbac = load('weft-rbac.yaml');

describe('deploy manifests', () => {
  it('the runtime config validates with the runtime schema and uses transparent capture listeners', () => {
    const result = parseConfigText(configMap!.data['weft.yaml'] as string, 'weft.yaml');
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(configMap!.data['weft.yaml']).toContain('transparent: true');
  });

  it('the node setup file and plugin entry decode with weft-cni schemas', () => {
    const node = decode(nodeConfigSchema, { ...(parse(configMap!.data['cni-node.yaml'] as string) as object), runtimeIp: '10.244.0.5' });
    expect(node.ok, JSON.stringify(node)).toBe(true);
    const plugin = decodePluginConfig({ ...(JSON.parse(configMap!.data['cni-plugin.json'] as string) as object), cniVersion: '1.0.0', name: 'k8s', type: 'weft-cni' });
    expect(plugin.ok, JSON.stringify(plugin)).toBe(true);
  });

  it('every container mounts only declared volumes and every weft-cni call is a known command', () => {
    for (const ds of daemonSets) {
      const spec = ds.spec.template.spec as Doc;
      const volumes = new Set((spec.volumes as Doc[]).map((v) => v.name as string));
      for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Doc[]) {
        for (const m of (c.volumeMounts ?? []) as Doc[]) expect(volumes, `${ds.metadata.name}/${c.name}`).toContain(m.name);
        const command = c.command as string[];
        // Either an argv whose program is weft-cni, or `sh -c` with `&&`-joined weft-cni invocations.
        const invocations = command[0] === 'sh' ? command[2]!.split('&&').map((part) => part.trim().split(/\s+/)) : [command];
        for (const argv of invocations) {
          if (!argv[0]!.endsWith('weft-cni')) continue;
          expect(['install', 'uninstall', 'node']).toContain(argv[1]);
          if (argv[1] === 'node') expect(['setup', 'cleanup', 'doctor']).toContain(argv[2]);
        }
      }
      expect(rbac.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === spec.serviceAccountName)).toBe(true);
      expect(spec.hostPID).toBe(true);
    }
  });
});
