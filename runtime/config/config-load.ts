/** Turns weft.yaml text into a valid WeftConfig or the full list of problems, each with its path and file:line; never throws on bad input. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import { configSchema } from './config-schema.js';
import { crossReferenceProblems, fileSourceProblems } from './config-validate.js';
import { formatPath, type ConfigResult } from './config-problem.js';
import { workerCountWarning } from '../workers/worker-count.js';

/** Position of the deepest YAML node that exists along `path` (a missing key points at its parent). */
function locate(doc: Document, lines: LineCounter, path: readonly PropertyKey[]): { line: number; column: number } | undefined {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth) as (string | number)[], true);
    if (isNode(node) && node.range !== undefined && node.range !== null) {
      const pos = lines.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return undefined;
}

/** Position of the key `name` inside the map at `path` (where a typo'd field is written). */
function locateKey(doc: Document, lines: LineCounter, path: readonly PropertyKey[], name: string): { line: number; column: number } | undefined {
  const map = path.length === 0 ? doc.contents : doc.getIn(path as (string | number)[], true);
  if (!isMap(map)) return undefined;
  const pair = map.items.find((p) => isScalar(p.key) && p.key.value === name);
  const range = isScalar(pair?.key) ? pair.key.range : undefined;
  if (range === undefined || range === null) return undefined;
  const pos = lines.linePos(range[0]);
  return { line: pos.line, column: pos.col };
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const key of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[key] : undefined;
  return v;
}

export function parseConfigText(text: string, file = 'weft.yaml'): ConfigResult {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      problems: doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
        return { file, path: '', message: `YAML syntax: ${e.message.split('\n')[0] ?? e.code}`, line: pos?.line, column: pos?.col };
      }),
    };
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      problems: parsed.error.issues.flatMap((issue) => {
        if (issue.code === 'unrecognized_keys') {
          return issue.keys.map((key) => ({ file, path: formatPath([...issue.path, key]), message: `unknown field "${key}"`, ...(locateKey(doc, lines, issue.path, key) ?? locate(doc, lines, issue.path)) }));
        }
        const missing = issue.code === 'invalid_type' && valueAt(raw, issue.path) === undefined;
        const message = missing ? `required field is missing (expected ${issue.expected})` : issue.message;
        return [{ file, path: formatPath(issue.path), message, ...locate(doc, lines, issue.path) }];
      }),
    };
  }
  const crossProblems = [...fileSourceProblems(parsed.data), ...crossReferenceProblems(parsed.data)];
  if (crossProblems.length > 0) {
    return { ok: false, problems: crossProblems.map((p) => ({ file, path: formatPath(p.path), message: p.message, ...locate(doc, lines, p.path) })) };
  }
  const tooMany = workerCountWarning(parsed.data.workers);
  const warnings = tooMany === undefined ? [] : [{ file, path: 'workers', message: tooMany, ...locate(doc, lines, ['workers']) }];
  return { ok: true, config: parsed.data, ...(warnings.length === 0 ? {} : { warnings }) };
}

export async function loadConfigFile(file: string): Promise<ConfigResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { ok: false, problems: [{ file, path: '', message: `cannot read the file: ${(err as Error).message}` }] };
  }
  const result = parseConfigText(text, file);
  if (!result.ok) return result;
  // `file://relative/path` is resolved against the config file's directory, so examples work from any checkout.
  const dir = path.dirname(path.resolve(file));
  const plugins = result.config.plugins.map((p) => (p.url.startsWith('file://') && !p.url.startsWith('file:///') ? { ...p, url: pathToFileURL(path.resolve(dir, p.url.slice('file://'.length))).href } : p));
  return { ...result, config: { ...result.config, plugins } };
}
