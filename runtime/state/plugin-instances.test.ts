// Annotation overrides become stable, deduplicated plugin instances that keep the plugin's root id.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/config-schema.js';
import { expandPluginInstances, instanceNames, pluginInstanceName } from './plugin-instances.js';

const config = configSchema.parse({
  plugins: [{ name: 'rewrite', url: 'file:///p.wasm', config: { base: true } }],
  namespaces: [{ name: 'shop', annotations: { 'weft.dev/plugins': 'rewrite', 'weft.dev/plugin-config.rewrite': '{"a":1}' } }],
  services: [
    { name: 'a', ports: [{ port: 80 }], annotations: { 'weft.dev/plugins': 'rewrite', 'weft.dev/plugin-config.rewrite': '{"a":1}' } },
    { name: 'b', ports: [{ port: 80 }], annotations: { 'weft.dev/plugins': 'rewrite', 'weft.dev/plugin-config.rewrite': '{"b":2}' } },
    { name: 'c', ports: [{ port: 80 }], annotations: { 'weft.dev/plugins': 'rewrite' } },
  ],
});

describe('plugin instances', () => {
  it('adds one instance per distinct override, configured with it', () => {
    const expanded = expandPluginInstances(config);
    expect(expanded.map((p) => p.name)).toEqual(['rewrite', pluginInstanceName('rewrite', { a: 1 }), pluginInstanceName('rewrite', { b: 2 })]);
    expect(expanded[1]).toMatchObject({ url: 'file:///p.wasm', config: { a: 1 } });
    expect(expanded[1]!.pluginName).toBeUndefined();
    expect(expandPluginInstances(config)).toBe(expanded);
  });

  it('maps attached names to their instance only when an override exists', () => {
    expect(instanceNames(['rewrite', 'other'], { rewrite: { b: 2 } })).toEqual([pluginInstanceName('rewrite', { b: 2 }), 'other']);
    expect(instanceNames(['rewrite'], {})).toEqual(['rewrite']);
  });
});
