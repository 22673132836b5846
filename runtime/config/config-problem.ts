/** A configuration problem (path inside the file, file:line:column) and how it prints; free of the schema library so every process can report them. */
import type { WeftConfig } from './config-schema.js';

export interface ConfigProblem {
  /** Dotted path inside the file, e.g. `services[0].ports[1].port`; empty for the document itself. */
  path: string;
  message: string;
  file: string;
  line?: number;
  column?: number;
}

/** `warnings` are accepted but worth telling the operator (e.g. more workers than usable cores). */
export type ConfigResult = { ok: true; config: WeftConfig; warnings?: ConfigProblem[] } | { ok: false; problems: ConfigProblem[] };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out;
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  return `${where}: ${p.path === '' ? '' : p.path + ': '}${p.message}`;
}
