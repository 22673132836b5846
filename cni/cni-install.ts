/** The DaemonSet's CNI install: weft-cni's files into the CNI bin dir and weft-cni chained into the primary network's conflist (a .conf is wrapped into a .conflist), written atomically and idempotently, with a record of every byte it replaced so uninstall restores the directories exactly. */
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, openSync, readSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

function hasOurEntry(text: string): boolean {
  try {
    const list = JSON.parse(text) as Partial<Conflist>;
    return Array.isArray(list.plugins) && list.plugins.some((p) => p.type === PLUGIN_TYPE);
  } catch {
    return false;
  }
}

function stripListFields(conf: Record<string, unknown>): Record<string, unknown> {
  const { cniVersion: _v, name: _n, ...plugin } = conf;
  return plugin;
}

/** One file of weft-cni for the bin dir: copied from `source`, or written from `content` (the launcher script). */
export interface PayloadFile {
  path: string;
  source?: string;
  content?: string;
  mode: number;
}

/** What an install wrote, kept in the state dir: enough to take every change back. */
export interface InstallRecord {
  binDir: string;
  confDir: string;
  /** Relative to binDir, each with the sha256 of what we wrote. */
  files: { path: string; sha256: string }[];
  /** Directories we created under binDir, parents first. */
  dirs: string[];
  /** Each conflist we wrote (relative to confDir) and the file it replaced, byte for byte. */
  conflists: { path: string; sha256: string; original: { path: string; text: string; mode: number } }[];
}

export interface InstallOptions {
  binDir: string;
  confDir: string;
  payload: PayloadFile[];
  entry: Record<string, unknown>;
  /** Where the record lives (`<stateDir>/install.json`); the caller holds the install lock. */
  recordFile: string;
}

export function installRecordFile(stateDir: string): string {
  return path.join(stateDir, 'install.json');
}

/**
 * Copies the payload (the launcher last, so the plugin never runs half-installed), then chains the entry; returns the
 * conflist written, or undefined while the conf dir has no primary config yet. Files that already hold the right
 * bytes are not touched, so a second run changes nothing.
 */
export function installCni(opts: InstallOptions): string | undefined {
  const record = readRecord(opts.recordFile) ?? { binDir: opts.binDir, confDir: opts.confDir, files: [], dirs: [], conflists: [] };
  for (const file of opts.payload) {
    const target = path.join(opts.binDir, file.path);
    for (const dir of parentDirs(file.path)) {
      if (existsSync(path.join(opts.binDir, dir))) continue;
      if (!record.dirs.includes(dir)) record.dirs.push(dir);
      saveRecord(opts.recordFile, record);
      mkdirSync(path.join(opts.binDir, dir));
    }
    const bytes = file.content === undefined ? undefined : Buffer.from(file.content);
    const wanted = bytes === undefined ? sha256File(file.source!) : sha256(bytes);
    record.files = [...record.files.filter((f) => f.path !== file.path), { path: file.path, sha256: wanted }];
    saveRecord(opts.recordFile, record);
    if (existsSync(target) && sha256File(target) === wanted && (statSync(target).mode & 0o777) === file.mode) continue;
    const tmp = `${target}.weft-tmp`;
    if (bytes === undefined) copyFileSync(file.source!, tmp);
    else writeFileSync(tmp, bytes);
    chmodSync(tmp, file.mode);
    renameSync(tmp, target);
  }
  return chainPrimary(opts, record);
}

/** Chains weft-cni into the current primary config (again, if the primary CNI rewrote it); a no-op when it is in place. */
export function chainPrimary(opts: Pick<InstallOptions, 'confDir' | 'entry' | 'recordFile' | 'binDir'>, known?: InstallRecord): string | undefined {
  const record = known ?? readRecord(opts.recordFile) ?? { binDir: opts.binDir, confDir: opts.confDir, files: [], dirs: [], conflists: [] };
  const source = primaryConfigFile(opts.confDir);
  if (source === undefined) return undefined;
  const text = readFileSync(source, 'utf8');
  const wanted = chainIntoConflist(text, opts.entry);
  const out = source.endsWith('.conflist') ? source : source.replace(/\.(conf|json)$/, '.conflist');
  const rel = path.basename(out);
  const earlier = record.conflists.find((c) => c.path === rel);
  if (out === source && text === wanted && earlier !== undefined) return out;
  // The bytes to give back: the file as the primary CNI wrote it, or (our entry already there with no record, after a
  // reboot emptied the state dir) the same list without it.
  const original = hasOurEntry(text)
    ? (earlier?.original ?? { path: path.basename(source), text: unchainFromConflist(text), mode: statSync(source).mode & 0o777 })
    : { path: path.basename(source), text, mode: statSync(source).mode & 0o777 };
  record.conflists = [...record.conflists.filter((c) => c.path !== rel), { path: rel, sha256: sha256(Buffer.from(wanted)), original }];
  saveRecord(opts.recordFile, record);
  if (text !== wanted || out !== source) writeAtomic(out, wanted, original.mode);
  if (out !== source) rmSync(source);
  return out;
}

/**
 * Takes back what the record lists: each conflist we wrote gets its original bytes and name back (or, if someone
 * rewrote it since, just loses our entry), then our files and the directories we made go. Without a record (an install
 * older than records) it removes our entry from the primary config and the launcher.
 */
export function uninstallCni(binDir: string, confDir: string, recordFile: string): void {
  const record = readRecord(recordFile);
  if (record === undefined) {
    const source = primaryConfigFile(confDir);
    if (source !== undefined && hasOurEntry(readFileSync(source, 'utf8'))) writeAtomic(source, unchainFromConflist(readFileSync(source, 'utf8')));
    rmSync(path.join(binDir, PLUGIN_TYPE), { force: true });
    return;
  }
  for (const c of [...record.conflists].reverse()) {
    const file = path.join(confDir, c.path);
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    if (sha256(Buffer.from(text)) === c.sha256) {
      writeAtomic(path.join(confDir, c.original.path), c.original.text, c.original.mode);
      if (c.original.path !== c.path) rmSync(file);
    } else if (hasOurEntry(text)) {
      writeAtomic(file, unchainFromConflist(text), statSync(file).mode & 0o777);
    }
  }
  for (const f of [...record.files].reverse()) rmSync(path.join(binDir, f.path), { force: true });
  for (const dir of [...record.dirs].reverse()) {
    try {
      rmdirSync(path.join(binDir, dir));
    } catch {
      // Not empty: something else was put there since; leave it.
    }
  }
  rmSync(recordFile, { force: true });
}

export function readRecord(file: string): InstallRecord | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as InstallRecord;
  } catch (err) {
    throw new WeftError('WEFT_ERR_CNI', `the install record ${file} is not valid JSON; remove it to start over`, { cause: err });
  }
}

function saveRecord(file: string, record: InstallRecord): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeAtomic(file, JSON.stringify(record, null, 2) + '\n');
}

/** `a/b/c` → `a`, `a/b`: the directories a payload path needs, parents first. */
function parentDirs(rel: string): string[] {
  const parts = rel.split('/').slice(0, -1);
  return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
}

function writeAtomic(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.weft-tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** In 1 MiB reads: the payload holds the 100 MB Node binary, which need not sit in the installer's memory. */
function sha256File(file: string): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 20);
  const fd = openSync(file, 'r');
  try {
    for (let n = readSync(fd, chunk); n > 0; n = readSync(fd, chunk)) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}
