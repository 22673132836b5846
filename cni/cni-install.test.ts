// The install step: weft-cni chained last and idempotently, a .conf wrapped, the host payload runnable, and uninstall
// (once, or when the last of two overlapping installers stops) restoring both directories byte for byte.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostPayload, elfInterpreter } from './cni-host-payload.js';
import { runInstallDaemon } from './cni-install-daemon.js';
import { chainIntoConflist, chainPrimary, installCni, installRecordFile, uninstallCni, type InstallOptions } from './cni-install.js';

const bridge = { cniVersion: '1.0.0', name: 'k8s-pod-network', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'portmap', capabilities: { portMappings: true } }] };

/** Every file under dir: relative path → bytes, mode, inode and mtime (what "changes nothing" and "byte for byte" compare). */
function snapshot(dir: string): Record<string, { bytes: string; mode: number; ino: number; mtimeMs: number }> {
  const out: Record<string, { bytes: string; mode: number; ino: number; mtimeMs: number }> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const st = statSync(file);
    out[path.relative(dir, file)] = { bytes: st.isFile() ? readFileSync(file).toString('base64') : 'dir', mode: st.mode, ino: st.ino, mtimeMs: st.mtimeMs };
  }
  return out;
}
const contents = (snap: ReturnType<typeof snapshot>): Record<string, string> => Object.fromEntries(Object.entries(snap).map(([k, v]) => [k, `${v.bytes}:${v.mode}`]));

let dir: string;
let opts: InstallOptions;
let stateDir: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'weft-install-'));
  const [bin, conf] = [path.join(dir, 'host/opt/cni/bin'), path.join(dir, 'host/etc/cni/net.d')];
  mkdirSync(bin, { recursive: true });
  mkdirSync(conf, { recursive: true });
  stateDir = path.join(dir, 'state');
  writeFileSync(path.join(dir, 'weft-cni-src'), '#!/bin/sh\necho weft-cni\n');
  // The primary CNI's own files: a plugin binary and a config with its own formatting and mode.
  writeFileSync(path.join(bin, 'bridge'), 'ELF-ish', { mode: 0o755 });
  writeFileSync(path.join(conf, '10-bridge.conf'), '{"cniVersion":"0.4.0","name":"pods","type":"bridge","bridge":"cni0"}', { mode: 0o600 });
  chmodSync(path.join(conf, '10-bridge.conf'), 0o600);
  opts = { binDir: bin, confDir: conf, payload: [{ path: 'weft-cni', source: path.join(dir, 'weft-cni-src'), mode: 0o755 }], entry: { enroll: { namespaces: ['mesh'] } }, recordFile: installRecordFile(stateDir) };
});

afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('CNI install', () => {
  it('appends weft-cni after the primary plugins, once, however often it runs', () => {
    const once = chainIntoConflist(JSON.stringify(bridge), { enroll: { namespaces: ['mesh'] } });
    const twice = chainIntoConflist(once, { enroll: { namespaces: ['mesh'] } });
    expect(twice).toBe(once);
    expect((JSON.parse(once) as { plugins: { type: string }[] }).plugins.map((p) => p.type)).toEqual(['bridge', 'portmap', 'weft-cni']);
  });

  it('wraps a .conf into a .conflist, changes nothing the second time, and uninstall restores both dirs byte for byte', () => {
    const before = snapshot(path.join(dir, 'host'));
    const out = installCni(opts)!;
    expect(path.basename(out)).toBe('10-bridge.conflist');
    expect(readdirSync(opts.confDir)).toEqual(['10-bridge.conflist']);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ cniVersion: '0.4.0', name: 'pods', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'weft-cni', enroll: { namespaces: ['mesh'] } }] });
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readdirSync(opts.binDir).sort()).toEqual(['bridge', 'weft-cni']);

    const installed = snapshot(path.join(dir, 'host'));
    installCni(opts);
    expect(snapshot(path.join(dir, 'host'))).toEqual(installed);

    uninstallCni(opts.binDir, opts.confDir, opts.recordFile);
    expect(contents(snapshot(path.join(dir, 'host')))).toEqual(contents(before));
    expect(readdirSync(stateDir)).toEqual([]);
  });

  it('re-chains after the primary CNI rewrites its config, and uninstall gives back the rewritten file', () => {
    installCni(opts);
    const conflist = path.join(opts.confDir, '10-bridge.conflist');
    const rewritten = JSON.stringify({ ...bridge, name: 'pods' });
    writeFileSync(conflist, rewritten);
    expect(chainPrimary(opts)).toBe(conflist);
    expect(readFileSync(conflist, 'utf8')).toContain('"weft-cni"');
    uninstallCni(opts.binDir, opts.confDir, opts.recordFile);
    expect(readFileSync(conflist, 'utf8')).toBe(rewritten);
  });

  it('leaves a config someone changed after us alone except for our entry', () => {
    installCni(opts);
    const conflist = path.join(opts.confDir, '10-bridge.conflist');
    const edited = JSON.parse(readFileSync(conflist, 'utf8')) as { plugins: unknown[] };
    edited.plugins.unshift({ type: 'tuning' });
    writeFileSync(conflist, JSON.stringify(edited));
    uninstallCni(opts.binDir, opts.confDir, opts.recordFile);
    expect((JSON.parse(readFileSync(conflist, 'utf8')) as { plugins: { type: string }[] }).plugins.map((p) => p.type)).toEqual(['tuning', 'bridge']);
  });

  it('with no primary config yet installs the files and reports that nothing was chained', () => {
    rmSync(path.join(opts.confDir, '10-bridge.conf'));
    expect(installCni(opts)).toBeUndefined();
    expect(readdirSync(opts.binDir)).toContain('weft-cni');
  });
});

describe('host payload', () => {
  it('runs the bundled plugin with our Node through our own loader and libraries', () => {
    const bundle = path.join(dir, 'weft-cni.mjs');
    writeFileSync(bundle, "process.stdout.write(`payload ok ${process.argv.slice(2).join(' ')} ${process.version}`);\n");
    const payload = hostPayload(bundle);
    expect(elfInterpreter(process.execPath)).toMatch(/^\/.*ld-linux.*\.so/);
    installCni({ ...opts, payload });
    const out = execFileSync(path.join(opts.binDir, 'weft-cni'), ['ADD', 'x'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    expect(out).toBe(`payload ok ADD x ${process.version}`);
    expect(readdirSync(path.join(opts.binDir, 'weft-cni.d/lib')).some((f) => f.startsWith('libc.so'))).toBe(true);
    uninstallCni(opts.binDir, opts.confDir, opts.recordFile);
    expect(readdirSync(opts.binDir)).toEqual(['bridge']);
  });
});

describe('install --watch', () => {
  it('of two overlapping installers (a rolling update) only the last one to stop uninstalls', async () => {
    const before = contents(snapshot(path.join(dir, 'host')));
    const [a, b] = [new AbortController(), new AbortController()];
    const readyA = path.join(dir, 'ready-a');
    const runA = runInstallDaemon({ install: opts, stateDir, readyFile: readyA, recheckMs: 60_000, signal: a.signal });
    await expect.poll(() => readdirSync(dir).includes('ready-a'), { timeout: 10_000 }).toBe(true);
    const runB = runInstallDaemon({ install: opts, stateDir, recheckMs: 60_000, signal: b.signal });
    await expect.poll(() => readFileSync(path.join(opts.confDir, '10-bridge.conflist'), 'utf8').includes('weft-cni'), { timeout: 10_000 }).toBe(true);
    const installed = snapshot(path.join(dir, 'host'));
    a.abort();
    await runA;
    expect(readdirSync(dir)).not.toContain('ready-a');
    expect(snapshot(path.join(dir, 'host'))).toEqual(installed);
    b.abort();
    await runB;
    expect(contents(snapshot(path.join(dir, 'host')))).toEqual(before);
  });

  it('chains again when the primary CNI rewrites its config while it runs', async () => {
    const stop = new AbortController();
    const run = runInstallDaemon({ install: opts, stateDir, recheckMs: 60_000, signal: stop.signal });
    const conflist = path.join(opts.confDir, '10-bridge.conflist');
    await expect.poll(() => readdirSync(opts.confDir)).toEqual(['10-bridge.conflist']);
    writeFileSync(conflist, JSON.stringify(bridge));
    await expect.poll(() => readFileSync(conflist, 'utf8').includes('weft-cni'), { timeout: 10_000 }).toBe(true);
    stop.abort();
    await run;
    expect(readFileSync(conflist, 'utf8')).toBe(JSON.stringify(bridge));
  });
});
