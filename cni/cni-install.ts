/** The DaemonSet's CNI install step: the weft-cni executable into the CNI bin dir and weft-cni chained into the primary network's conflist (a .conf is wrapped into a .conflist), both written atomically and idempotently; uninstall removes exactly our entry. */
import { copyFileSync, chmodSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WeftError } from '../runtime/errors.js';

export const PLUGIN_TYPE = 'weft-cni';

interface Conflist {
  cniVersion?: string;
  name?: string;
  plugins: Record<string, unknown>[];
  [key: string]: unknown;
}

/** The primary network's config: the lexically first .conflist/.conf/.json in the directory, as CNI runtimes pick it. */
export function primaryConfigFile(confDir: string): string | undefined {
  const files = readdirSync(confDir)
    .filter((f) => /\.(conflist|conf|json)$/.test(f))
    .sort();
  return files[0] === undefined ? undefined : path.join(confDir, files[0]);
}

/** Returns the conflist text with our entry last (replacing an earlier copy of it); a single-plugin .conf becomes a list. */
export function chainIntoConflist(text: string, entry: Record<string, unknown>): string {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new WeftError('WEFT_ERR_CNI', 'the primary CNI config is not valid JSON; not touching it', { cause: err });
  }
  const list: Conflist = Array.isArray(parsed.plugins)
    ? (parsed as Conflist)
    : { cniVersion: parsed.cniVersion as string | undefined, name: parsed.name as string | undefined, plugins: [stripListFields(parsed)] };
  const plugins = list.plugins.filter((p) => p.type !== PLUGIN_TYPE);
  return JSON.stringify({ ...list, plugins: [...plugins, { ...entry, type: PLUGIN_TYPE }] }, null, 2) + '\n';
}

export function unchainFromConflist(text: string): string {
  const list = JSON.parse(text) as Conflist;
  if (!Array.isArray(list.plugins)) return text;
  return JSON.stringify({ ...list, plugins: list.plugins.filter((p) => p.type !== PLUGIN_TYPE) }, null, 2) + '\n';
}

function stripListFields(conf: Record<string, unknown>): Record<string, unknown> {
  const { cniVersion: _v, name: _n, ...plugin } = conf;
  return plugin;
}

function writeAtomic(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.weft-tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, file);
}

export interface InstallOptions {
  binary: string;
  binDir: string;
  confDir: string;
  entry: Record<string, unknown>;
}

/** Copies the binary, then chains the entry; returns the conflist path written. A .conf source is replaced by a .conflist of the same stem. */
export function installCni(opts: InstallOptions): string {
  const target = path.join(opts.binDir, PLUGIN_TYPE);
  const tmp = `${target}.weft-tmp`;
  copyFileSync(opts.binary, tmp);
  chmodSync(tmp, 0o755);
  renameSync(tmp, target);
  const source = primaryConfigFile(opts.confDir);
  if (source === undefined) throw new WeftError('WEFT_ERR_CNI', `no CNI network config in ${opts.confDir}; install the primary CNI first`);
  const text = chainIntoConflist(readFileSync(source, 'utf8'), opts.entry);
  const out = source.endsWith('.conflist') ? source : source.replace(/\.(conf|json)$/, '.conflist');
  writeAtomic(out, text);
  if (out !== source) rmSync(source);
  return out;
}

export function uninstallCni(binDir: string, confDir: string): void {
  const source = primaryConfigFile(confDir);
  if (source !== undefined) writeAtomic(source, unchainFromConflist(readFileSync(source, 'utf8')));
  rmSync(path.join(binDir, PLUGIN_TYPE), { force: true });
}
