/** Istio `WasmPlugin` (extensions.istio.io/v1alpha1) to a weft plugin, with what it attaches itself to (selector: workloads, targetRefs: Services); a field weft cannot honour is a problem on that object. */
import type { PluginConfig } from '../config/config-schema.js';
import { pluginSchema } from '../config/config-schema.js';
import type { SlimCustom } from './kube-objects.js';

export interface MappedWasmPlugin {
  plugin: PluginConfig;
  /** matchLabels of `selector`: workloads of the plugin's namespace (every namespace from the root namespace). */
  selector: Record<string, string> | undefined;
  /** Names of Services (in the plugin's namespace) from `targetRefs`/`targetRef`. */
  services: string[];
}

/** A WasmPlugin `ns/name` is the weft plugin `name.ns`: annotations in `ns` name it `name`. */
export function modelPluginName(namespace: string, name: string): string {
  return `${name}.${namespace}`;
}

export function mapWasmPlugin(obj: SlimCustom): { ok: true; value: MappedWasmPlugin } | { ok: false; reason: string } {
  const spec = obj.spec as {
    url?: string; sha256?: string; phase?: string; priority?: number; failStrategy?: string; pluginConfig?: unknown; pluginName?: string; type?: string;
    selector?: { matchLabels?: Record<string, string> }; targetRef?: { kind?: string; name?: string; group?: string }; targetRefs?: { kind?: string; name?: string; group?: string }[];
    vmConfig?: { env?: { name: string; value?: string; valueFrom?: string }[] };
  };
  if (typeof spec.url !== 'string' || spec.url === '') return { ok: false, reason: 'spec.url is required' };
  if (spec.type !== undefined && spec.type !== 'HTTP' && spec.type !== 'UNSPECIFIED_PLUGIN_TYPE') return { ok: false, reason: `spec.type ${spec.type} is not supported (weft runs HTTP plugins)` };
  const refs = [...(spec.targetRefs ?? []), ...(spec.targetRef === undefined ? [] : [spec.targetRef])];
  if (spec.selector !== undefined && refs.length > 0) return { ok: false, reason: 'spec.selector and spec.targetRefs are mutually exclusive' };
  const unsupported = refs.filter((r) => r.kind !== 'Service');
  if (unsupported.length > 0) return { ok: false, reason: `targetRefs of kind ${unsupported.map((r) => r.kind).join(', ')} are not supported (weft attaches to Services)` };
  // Istio accepts an image reference without a scheme as an OCI image.
  const url = /^[a-z]+:\/\//.test(spec.url) ? spec.url : `oci://${spec.url}`;
  const env: Record<string, string> = {};
  for (const e of spec.vmConfig?.env ?? []) if ((e.valueFrom ?? 'INLINE') === 'INLINE' && e.value !== undefined) env[e.name] = e.value;
  const raw = {
    name: modelPluginName(obj.namespace ?? 'default', obj.name),
    url,
    ...(spec.sha256 === undefined || spec.sha256 === '' ? {} : { sha256: spec.sha256 }),
    ...(spec.phase === undefined ? {} : { phase: spec.phase }),
    ...(spec.priority === undefined ? {} : { priority: spec.priority }),
    ...(spec.failStrategy === undefined ? {} : { failStrategy: spec.failStrategy }),
    ...(spec.pluginConfig === undefined ? {} : { config: spec.pluginConfig }),
    pluginName: spec.pluginName ?? obj.name,
    ...(Object.keys(env).length === 0 ? {} : { vmConfig: { env } }),
  };
  const parsed = pluginSchema.safeParse(raw);
  if (!parsed.success) {
    const fieldOf: Record<string, string> = { config: 'pluginConfig' };
    return { ok: false, reason: parsed.error.issues.map((i) => `spec.${i.path.map((p) => fieldOf[String(p)] ?? String(p)).join('.')}: ${i.message}`).join('; ') };
  }
  return { ok: true, value: { plugin: parsed.data, selector: spec.selector?.matchLabels, services: refs.map((r) => r.name ?? '').filter((n) => n !== '') } };
}
