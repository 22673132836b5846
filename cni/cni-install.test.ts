// The install step's conflist editing: chained last, idempotent, .conf wrapped, uninstall removes only our entry.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chainIntoConflist, installCni, uninstallCni } from './cni-install.js';

const bridge = { cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'portmap', capabilities: { portMappings: true } }] };

describe('CNI install', () => {
  it('appends weft-cni after the primary plugins, once, however often it runs', () => {
    const once = chainIntoConflist(JSON.stringify(bridge), { enroll: { namespaces: ['mesh'] } });
    const twice = chainIntoConflist(once, { enroll: { namespaces: ['mesh'] } });
    expect(twice).toBe(once);
    expect((JSON.parse(once) as { plugins: { type: string }[] }).plugins.map((p) => p.type)).toEqual(['bridge', 'portmap', 'weft-cni']);
  });

  it('wraps a single-plugin .conf into a .conflist and uninstall leaves the primary intact', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'weft-install-'));
    try {
      const [bin, conf] = [path.join(dir, 'bin'), path.join(dir, 'net.d')];
      for (const d of [bin, conf]) rmSync(d, { recursive: true, force: true });
      writeFileSync(path.join(dir, 'weft-cni-src'), '#!/bin/sh\n');
      mkdirSync(bin);
      mkdirSync(conf);
      writeFileSync(path.join(conf, '10-bridge.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'pods', type: 'bridge', bridge: 'cni0' }));
      const out = installCni({ binary: path.join(dir, 'weft-cni-src'), binDir: bin, confDir: conf, entry: {} });
      expect(path.basename(out)).toBe('10-bridge.conflist');
      expect(readdirSync(conf)).toEqual(['10-bridge.conflist']);
      expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ cniVersion: '0.4.0', name: 'pods', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'weft-cni' }] });
      expect(readdirSync(bin)).toEqual(['weft-cni']);
      uninstallCni(bin, conf);
      expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ cniVersion: '0.4.0', name: 'pods', plugins: [{ type: 'bridge', bridge: 'cni0' }] });
      expect(readdirSync(bin)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
