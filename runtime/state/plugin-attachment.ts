/** Plugin attachment by annotation (`weft.dev/plugins`, `weft.dev/plugin-config.<plugin>`) on a workload, service or namespace; the nearest one wins. */

export const PLUGINS_ANNOTATION = 'weft.dev/plugins';
export const PLUGIN_CONFIG_ANNOTATION_PREFIX = 'weft.dev/plugin-config.';

export interface PluginAttachment {
  /** Plugin names in the order written; the L7 chain orders them by phase and priority. */
  plugins: string[];
  /** Per-plugin configuration overrides from `weft.dev/plugin-config.<plugin>` (already JSON-parsed). */
  configOverrides: Record<string, unknown>;
  /** Where the attachment came from, for config_dump and access logs. */
  source: 'workload' | 'service' | 'namespace';
}

export function parsePluginList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Reads one object's annotations; undefined when it attaches nothing (so a nearer level can defer to a farther one). */
export function attachmentFromAnnotations(annotations: Record<string, string>, source: PluginAttachment['source']): PluginAttachment | undefined {
  const list = annotations[PLUGINS_ANNOTATION];
  if (list === undefined) return undefined;
  const configOverrides: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(annotations)) {
    if (!key.startsWith(PLUGIN_CONFIG_ANNOTATION_PREFIX)) continue;
    const plugin = key.slice(PLUGIN_CONFIG_ANNOTATION_PREFIX.length);
    try {
      configOverrides[plugin] = JSON.parse(value);
    } catch {
      // config-validate reports this with its file position; at runtime a bad override is ignored, not fatal.
    }
  }
  return { plugins: parsePluginList(list), configOverrides, source };
}

/** Nearest wins: workload, then service, then namespace (an empty `weft.dev/plugins: ""` detaches explicitly). */
export function resolveAttachment(...levels: (PluginAttachment | undefined)[]): PluginAttachment | undefined {
  const found = levels.find((a) => a !== undefined);
  return found === undefined || found.plugins.length === 0 ? undefined : found;
}

export function pluginConfigProblems(annotations: Record<string, string>): { key: string; message: string }[] {
  const out: { key: string; message: string }[] = [];
  for (const [key, value] of Object.entries(annotations)) {
    if (!key.startsWith(PLUGIN_CONFIG_ANNOTATION_PREFIX)) continue;
    try {
      JSON.parse(value);
    } catch (err) {
      out.push({ key, message: `not valid JSON: ${(err as Error).message}` });
    }
  }
  return out;
}
