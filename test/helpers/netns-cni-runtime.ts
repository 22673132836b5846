// A minimal CNI runtime for tests, per the spec's execution protocol: runs a .conflist's plugins in order (ADD, CHECK) or reverse (DEL), each
// inside the node namespace, feeding each the previous result; plus weft-cni bundled into one file so each invocation starts fast.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { nsRun, type RunResult } from './netns-exec.js';

export const SYSTEM_CNI_DIR = '/usr/lib/cni';
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}

export interface Attachment {
  containerId: string;
  netnsPath: string;
  ifname: string;
  /** CNI_ARGS pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID ...). */
  args: Record<string, string>;
}

export class CniPluginError extends Error {
  readonly result: RunResult;
  readonly plugin: string;

  constructor(plugin: string, result: RunResult) {
    super(`${plugin} failed (exit ${result.code}): ${result.stdout.trim()} ${result.stderr.trim()}`);
    this.plugin = plugin;
    this.result = result;
  }
}

/**
 * Bundles cni/main.ts (dependencies included, node commands split into a lazily loaded chunk as a
 * CNI binary's start-up time is ADD's latency) and writes a `weft-cni` executable into `binDir`.
 */
export async function installWeftCni(binDir: string): Promise<string> {
  mkdirSync(binDir, { recursive: true });
  await build({
    entryPoints: [path.join(repoRoot, 'cni/main.ts')],
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    outdir: path.join(binDir, 'js'),
    outExtension: { '.js': '.mjs' },
    logLevel: 'silent',
    banner: { js: "import { createRequire as __weftRequire } from 'node:module'; const require = __weftRequire(import.meta.url);" },
  });
  const exe = path.join(binDir, 'weft-cni');
  writeFileSync(exe, `#!/bin/sh\nexec ${process.execPath} ${path.join(binDir, 'js', 'main.mjs')} "$@"\n`);
  chmodSync(exe, 0o755);
  return exe;
}

export function pluginEnv(command: string, a: Attachment, cniPath: string[]): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: a.containerId,
    CNI_NETNS: a.netnsPath,
    CNI_IFNAME: a.ifname,
    CNI_ARGS: Object.entries(a.args)
      .map(([k, v]) => `${k}=${v}`)
      .join(';'),
    CNI_PATH: cniPath.join(':'),
  };
}

/** Runs one plugin binary inside `nodeNs` with the spec's environment and stdin. */
export async function invokePlugin(nodeNs: string, cniPath: string[], command: string, a: Attachment, conf: Record<string, unknown>, extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const type = String(conf.type);
  const binary = cniPath.map((d) => path.join(d, type)).find((p) => existsSync(p));
  if (binary === undefined) throw new Error(`CNI plugin ${type} not found in ${cniPath.join(':')}`);
  return nsRun(nodeNs, binary, [], { env: { ...pluginEnv(command, a, cniPath), ...extraEnv }, input: JSON.stringify(conf) });
}

function pluginConf(list: Conflist, plugin: Record<string, unknown>, prevResult: unknown): Record<string, unknown> {
  return { ...plugin, cniVersion: list.cniVersion, name: list.name, ...(prevResult === undefined ? {} : { prevResult }) };
}

/** ADD: each plugin in order, each getting the previous plugin's result; returns the final result. */
export async function conflistAdd(nodeNs: string, cniPath: string[], list: Conflist, a: Attachment): Promise<Record<string, unknown>> {
  let prev: unknown;
  for (const plugin of list.plugins) {
    const r = await invokePlugin(nodeNs, cniPath, 'ADD', a, pluginConf(list, plugin, prev));
    if (r.code !== 0) throw new CniPluginError(String(plugin.type), r);
    prev = JSON.parse(r.stdout);
  }
  return prev as Record<string, unknown>;
}

/** DEL: plugins in reverse order, each with the cached ADD result as prevResult (spec 0.4.0+). */
export async function conflistDel(nodeNs: string, cniPath: string[], list: Conflist, a: Attachment, cached: unknown): Promise<void> {
  for (const plugin of [...list.plugins].reverse()) {
    const r = await invokePlugin(nodeNs, cniPath, 'DEL', a, pluginConf(list, plugin, cached));
    if (r.code !== 0) throw new CniPluginError(String(plugin.type), r);
  }
}

export async function conflistCheck(nodeNs: string, cniPath: string[], list: Conflist, a: Attachment, cached: unknown): Promise<void> {
  for (const plugin of list.plugins) {
    const r = await invokePlugin(nodeNs, cniPath, 'CHECK', a, pluginConf(list, plugin, cached));
    if (r.code !== 0) throw new CniPluginError(String(plugin.type), r);
  }
}
