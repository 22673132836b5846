/** Per-attachment plugin configuration (`weft.dev/plugin-config.<plugin>`): each distinct override becomes its own plugin instance, as Istio would with a second WasmPlugin resource. */
// node:crypto is loaded on first use, not at start-up: an idle node holds none of it (test/bench/README.md, idle memory).
import type { PluginConfig, WeftConfig } from '../config/config-schema.js';
import { attachmentFromAnnotations } from './plugin-attachment.js';

/** Stable name of `plugin` configured with `override` (same override, same instance and VM). */
export function pluginInstanceName(plugin: string, override: unknown): string {
  return `${plugin}~${process.getBuiltinModule('node:crypto').createHash('sha256').update(JSON.stringify(override)).digest('hex').slice(0, 12)}`;
}

/** Maps attached plugin names to the instances that carry their overrides. */
export function instanceNames(plugins: readonly string[], overrides: Record<string, unknown>): string[] {
  return plugins.map((p) => (Object.hasOwn(overrides, p) ? pluginInstanceName(p, overrides[p]) : p));
}

const cache = new WeakMap<WeftConfig, PluginConfig[]>();

/** The configured plugins plus one instance per distinct override found on workloads, services and namespaces. */
export function expandPluginInstances(config: WeftConfig): PluginConfig[] {
  const hit = cache.get(config);
  if (hit !== undefined) return hit;
  const byName = new Map(config.plugins.map((p) => [p.name, p]));
  const out = new Map(config.plugins.map((p) => [p.name, p]));
  const owners = [...config.workloads, ...config.services, ...config.namespaces];
  for (const owner of owners) {
    const attachment = attachmentFromAnnotations(owner.annotations, 'workload');
    for (const [plugin, override] of Object.entries(attachment?.configOverrides ?? {})) {
      const base = byName.get(plugin);
      if (base === undefined) continue;
      const name = pluginInstanceName(plugin, override);
      // The instance keeps the plugin's root id (pluginName, "" when unset as in Istio): the same root context serves it.
      if (!out.has(name)) out.set(name, { ...base, name, config: override });
    }
  }
  const expanded = [...out.values()];
  cache.set(config, expanded);
  return expanded;
}
